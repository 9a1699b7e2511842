"""The `profilestream` command line: parses arguments and calls in, nothing else.

Exit codes: 0 done, 1 the work failed (rejected lines, no broker, missing topic, no profile),
2 bad usage or configuration. Commands backed by the dataflow are imported when they run, so
the I/O commands work on their own and start fast.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import sys
from typing import Callable

from profilestream import __version__
from profilestream.config import ConfigError, load_config


def _broker(config, args) -> int:
    from profilestream.devtools.broker import BrokerStartError, serve

    port = args.port if args.port is not None else _local_port(config.kafka.brokers)
    try:
        return serve(port)
    except BrokerStartError as exc:
        hint = "" if args.port is not None else " (the port of kafka.brokers; choose another with --port)"
        print(f"profilestream: {exc}{hint}", file=sys.stderr)
        return 1


def _local_port(brokers: str) -> int | None:
    """The port of the first of `kafka.brokers` when it is on this machine, so that `broker` and
    the other commands meet with no setting at all (default 127.0.0.1:9092); else None (a free port)."""
    host, _, port = brokers.split(",")[0].strip().rpartition(":")
    if host in ("127.0.0.1", "localhost") and port.isdigit():
        return int(port)
    return None


def _topics_create(config, args) -> int:
    from profilestream.kafka.clients import create_topics

    created = set(create_topics(config))
    for name in config.topics.names().values():
        print(f"{name}: {'created' if name in created else 'exists'}")
    return 0


def _lines(path: str):
    """Numbered lines; invalid UTF-8 is kept as surrogates so the codec rejects just that line."""
    if path == "-":
        binary = getattr(sys.stdin, "buffer", None)
        stream = sys.stdin if binary is None else io.TextIOWrapper(binary, "utf-8", "surrogateescape")
        yield from enumerate(stream, 1)
        return
    with open(path, encoding="utf-8", errors="surrogateescape") as fh:
        yield from enumerate(fh, 1)


def _produce(config, args) -> int:
    from profilestream.codec import avro
    from profilestream.kafka.clients import key_of, produce_records, role_of

    role = role_of(config, args.topic)
    rules = config.rules()
    rejected: list[str] = []

    def valid():
        for number, line in _lines(args.file):
            if not line.strip():
                continue
            try:
                record = avro.from_json(role, json.loads(line), rules)
            except json.JSONDecodeError as exc:
                rejected.append(f"line {number}: not valid JSON: {exc.msg} (column {exc.colno})")
            except avro.Rejected as exc:
                rejected.append(f"line {number}: {exc}")
            else:
                yield key_of(role, record), record

    sent = produce_records(config, role, valid())
    print(f"sent {sent} record{'s' * (sent != 1)} to {config.topics.name(role)}"
          + (f"; rejected {len(rejected)}" if rejected else ""))
    for reason in rejected:
        print(reason, file=sys.stderr)
    return 1 if rejected else 0


def _consume(config, args) -> int:
    from profilestream.codec import avro
    from profilestream.kafka.clients import read_topic, role_of

    role = role_of(config, args.topic)
    unreadable = 0
    for m in read_topic(config, config.topics.name(role), until_idle=args.until_idle):
        if m.value is None:
            out = {"key": None if m.key is None else m.key.decode("utf-8", "replace"), "tombstone": True}
        else:
            try:
                out = avro.to_json(role, avro.decode(role, m.value))
            except avro.Rejected as exc:
                unreadable += 1
                print(f"partition {m.partition} offset {m.offset}: {exc}", file=sys.stderr)
                continue
        print(json.dumps(out, ensure_ascii=False), flush=not args.until_idle)
    return 1 if unreadable else 0


def _run(config, args) -> int:
    from profilestream.flows import runner

    return runner.run(config, workers=args.workers, processes=args.processes,
                      until_idle=args.until_idle, recovery_dir=args.recovery_dir,
                      metrics_port=args.metrics_port, logs=True)


def _demo(config, args) -> int:
    from profilestream.devtools import demo

    return demo.main(config)


def _profile_get(config, args) -> int:
    from profilestream import store

    profile = store.get(config, args.identifier)
    if profile is None:
        print(f"profilestream: no profile for {args.identifier!r} "
              "(not a known device id, customer key, customer id or profile id)", file=sys.stderr)
        return 1
    print(json.dumps(profile, indent=2, ensure_ascii=False))
    return 0


def _serve_store(config, args) -> int:
    from profilestream import store

    print(f"following {config.topics.name('profiles')} into {config.store.path} (Ctrl-C stops)", flush=True)
    store.serve(config)
    return 0


def _record(config, args) -> int:
    from profilestream.kafka import recording

    topics = [t.strip() for t in args.topics.split(",") if t.strip()]
    try:
        counts = recording.record(config, topics, args.out)
    except recording.RecordingError as exc:
        print(f"profilestream: {exc}", file=sys.stderr)
        return 1
    for count in counts:
        print(count.summary())
    total = sum(c.records for c in counts)
    print(f"recorded {total} record{'s' * (total != 1)} from {len(counts)} topic{'s' * (len(counts) != 1)} to {args.out}")
    return 0


def _replay(config, args) -> int:
    from profilestream.kafka import recording

    try:
        counts = recording.replay(config, args.dir)
    except recording.RecordingError as exc:
        print(f"profilestream: {exc}", file=sys.stderr)
        return 1
    for count in counts:
        print(count.summary() + (" (created)" if count.created else ""))
    total = sum(c.records for c in counts)
    print(f"replayed {total} record{'s' * (total != 1)} into {len(counts)} topic{'s' * (len(counts) != 1)}")
    return 0


def _describe(config, args) -> int:
    from profilestream.flows import runner

    print(runner.describe(config))
    return 0


def _bench(config, args) -> int:
    from profilestream.devtools import bench

    return bench.main(config, args)


def _fit_model(config, args) -> int:
    from profilestream import bgnbd, store
    from profilestream.codec.avro import format_time, parse_time

    as_of = None
    if args.as_of is not None:
        text = args.as_of + ("T00:00:00Z" if len(args.as_of) == 10 else "")  # a date: its midnight UTC
        try:
            as_of = parse_time(text)
        except ValueError as exc:
            print(f"profilestream: --as-of: {exc}", file=sys.stderr)
            return 2
    unit_days = {"weeks": 7.0, "days": 1.0}[args.unit]
    data = bgnbd.calibration(store.all_profiles(config), as_of, unit_days)
    left_out = ", ".join(f"{n:,} {why.replace('_', ' ')}" for why, n in data.skipped.items() if n)
    if not data.x:
        print("profilestream: no profiles with orders in the store to fit the model to"
              + (f" (left out: {left_out})" if left_out else ""), file=sys.stderr)
        return 1
    fit = bgnbd.fit(data.x, data.t_x, data.T, unit_days)
    out = args.out or config.scores.model or "bgnbd.json"
    m = fit.model
    m.save(out, log_likelihood=fit.log_likelihood, customers=fit.customers, repeat_purchases=sum(data.x),
           as_of=format_time(data.as_of))
    print(f"fitted BG/NBD on {fit.customers:,} customers ({sum(data.x):,} repeat purchases) "
          f"as of {format_time(data.as_of)}, time in {args.unit}:")
    print(f"  r = {m.r:.4f}  alpha = {m.alpha:.4f}  a = {m.a:.4f}  b = {m.b:.4f}  "
          f"(log-likelihood {fit.log_likelihood:,.2f})")
    if left_out:
        print(f"left out: {left_out}")
    print(f'wrote {out}; profiles are scored with it when [scores] model = "{out}"')
    return 0


def _report_campaigns(config, args) -> int:
    from profilestream import store
    from profilestream.commands import report

    rows = report.campaign_report(store.all_profiles(config))
    if args.format == "csv":
        sys.stdout.write(report.to_csv(rows))
    else:
        print(report.to_table(rows))
    return 0


def _parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", metavar="FILE", default=argparse.SUPPRESS,
                        help="TOML configuration (default: $PROFILESTREAM_CONFIG, else built-in defaults)")
    parser = argparse.ArgumentParser(prog="profilestream", parents=[common],
                                     description="Real-time unified customer profiles on Kafka.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, call: Callable, help: str, parent=commands) -> argparse.ArgumentParser:
        sub = parent.add_parser(name, parents=[common], help=help, description=help)
        sub.set_defaults(call=call)
        return sub

    command("demo", _demo, "embedded broker + sample shop + dataflow, and print what came out")
    sub = command("broker", _broker, "run the embedded Kafka-compatible broker in the foreground")
    sub.add_argument("--port", type=int,
                     help="port to listen on (default: the port of kafka.brokers when it is local, else a free one)")
    topics = commands.add_parser("topics", help="manage the configured topics")
    command("create", _topics_create, "create every configured topic (idempotent)",
            topics.add_subparsers(dest="topics_command", required=True, metavar="COMMAND"))
    sub = command("produce", _produce, "validate JSON lines, encode them as Avro and produce them")
    sub.add_argument("--topic", required=True, help="configured topic name or role (e.g. clickstream)")
    sub.add_argument("file", metavar="FILE.jsonl", help="one JSON object a line; - reads stdin")
    sub = command("consume", _consume, "print a topic's records from the beginning as JSON lines")
    sub.add_argument("--topic", required=True, help="configured topic name or role")
    sub.add_argument("--until-idle", action="store_true", help="stop at the end of the topic (default: tail)")
    sub.add_argument("--format", choices=["jsonl"], default="jsonl", help="output format")
    sub = command("run", _run, "run the dataflow against the configured brokers")
    sub.add_argument("--workers", type=int, default=1, help="worker threads per process")
    sub.add_argument("--processes", type=int, default=1, help="processes (a local Bytewax cluster)")
    sub.add_argument("--until-idle", action="store_true",
                     help="process what is in the input topics, fire every pending timer, and exit")
    sub.add_argument("--recovery-dir", metavar="D", help="Bytewax recovery snapshots here (resume after a crash)")
    sub.add_argument("--metrics-port", type=int, metavar="P",
                     help="serve Prometheus metrics on http://0.0.0.0:P/metrics (process i of a cluster: P+i)")
    profile = commands.add_parser("profile", help="look up unified profiles")
    sub = command("get", _profile_get, "print the profile a device id, customer key or customer id belongs to",
                  profile.add_subparsers(dest="profile_command", required=True, metavar="COMMAND"))
    sub.add_argument("identifier")
    command("serve-store", _serve_store, "keep the local profile store current by following the profiles topic")
    sub = command("record", _record, "record topics to Avro container files (one a partition, plus a manifest)")
    sub.add_argument("--topics", default="clickstream,crm_changes", metavar="T1,T2",
                     help="configured topic names or roles, comma-separated (default: the two input topics)")
    sub.add_argument("--out", required=True, metavar="DIR", help="a new or empty directory")
    sub = command("replay", _replay, "produce a recording back into the broker, keys and order per partition kept")
    sub.add_argument("dir", metavar="DIR", help="a directory made by `profilestream record`")
    sub = command("fit-model", _fit_model, "fit the BG/NBD purchase model to the profile store and write it to a file")
    sub.add_argument("--out", metavar="FILE", help="model file to write (default: [scores] model, else bgnbd.json)")
    sub.add_argument("--as-of", metavar="TIME",
                     help="end of the observation period, ISO-8601 or a date (default: the latest profile update)")
    sub.add_argument("--unit", choices=["weeks", "days"], default="weeks", help="the model's time unit (default: weeks)")
    report = commands.add_parser("report", help="reports from the profile store")
    sub = command("campaigns", _report_campaigns,
                  "per campaign: profiles reached, leads, offers, sales and revenue, first and last touch",
                  report.add_subparsers(dest="report_command", required=True, metavar="COMMAND"))
    sub.add_argument("--format", choices=["table", "csv"], default="table", help="output format (default: table)")
    command("describe", _describe, "print the dataflow's steps and topics")
    from profilestream.devtools.bench import (
        add_arguments as bench_arguments,  # stdlib imports only: cheap
    )

    bench_arguments(command("bench", _bench, "the reference benchmark on the embedded broker: ceiling, throughput, latency, memory"))
    return parser


def _coded() -> tuple[type, ...]:
    """The failures that carry their exit code: a store directory that is not writable (2), full
    or failing (1), and a run that failed (1). Only a loaded module raises its own, so the commands
    that use neither are spared importing RocksDB and Bytewax to catch them."""
    found = []
    for module, name in (("profilestream.store", "StoreError"), ("profilestream.flows.runner", "RunFailed")):
        cls = getattr(sys.modules.get(module), name, None)
        if cls is not None:
            found.append(cls)
    return tuple(found)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    from profilestream.kafka.clients import BrokerError

    try:
        config = load_config(getattr(args, "config", None) or os.environ.get("PROFILESTREAM_CONFIG") or None)
        return args.call(config, args)
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
        return exc.code
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `consume ... | head`: the reader left; not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())
