"""Running the profile dataflow: one process or several, bounded or always-on.

`run` checks the brokers answer before anything starts (a clear error beats a silent hang), reads
the input topics' partition counts, and hands the dataflow to Bytewax. With `processes > 1` it
starts that many copies of itself as a Bytewax cluster on loopback and waits for all of them.

Recovery (`--recovery-dir D`): Bytewax snapshots the state at the end of every epoch, and the
epoch length is `run.snapshot_interval`. The input partitions snapshot the next offset to read,
the engine step the pickled Engine; both belong to the same epoch, so a run killed at any point
resumes from the last complete epoch with state and offsets that match, and writes again the
outputs after it (at-least-once; the outputs are deterministic, trigger ids included). A bounded
run resumed measures the input's end anew: every partition reads from its snapshot offset to the
end it has now. `D` is created with one recovery partition on first use; Bytewax keeps only the
latest complete snapshot there (`backup_interval` 0: it is how long superseded snapshots are kept
for an external backup to copy, not how often snapshots are taken).

Operations: JSON log lines on stderr (`start`, `partitions`, `partition`, `progress` every
`run.progress_interval` (10s), `end`) and, with `metrics_port`, a Prometheus endpoint
(`profilestream.metrics`); in a cluster, process i serves on `metrics_port + i`.
"""

from __future__ import annotations

import fcntl
import logging
import os
import gc
import pickle
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

from bytewax.recovery import RecoveryConfig, init_db_dir
from bytewax.run import cli_main
from confluent_kafka.admin import AdminClient

from flows.profiles import INPUT_ROLES, build_flow, engine_worker
from profilestream import metrics
from profilestream.io.inflight import InFlight
from profilestream.io.kafka import BrokerError, create_topics, end_offsets
from profilestream.io.source import STOP

RECOVERY_PARTITIONS = 1


class BrokerUnreachable(BrokerError):
    pass


class RecoveryDirError(ValueError):
    """`--recovery-dir` names something that is not (and cannot become) a recovery directory
    (exit code 2), or one that another run is using (exit code 1)."""

    def __init__(self, message: str, code: int = 2):
        super().__init__(message)
        self.code = code


def _silent_logger() -> logging.Logger:
    """For the first contact: librdkafka's own connection errors would print a screenful while it
    retries; `BrokerUnreachable` says it in one line instead."""
    quiet = logging.getLogger("profilestream.kafka.connect")
    quiet.propagate = False
    if not quiet.handlers:
        quiet.addHandler(logging.NullHandler())
    return quiet


def input_layout(config, bounded: bool) -> tuple[dict[str, int], dict | None]:
    """Partition counts of the input topics (creating missing topics first) and, for a bounded
    run, the exact offsets each input partition starts and ends at."""
    timeout = config.run.connect_timeout / 1000
    admin = AdminClient({**config.kafka.client_config(), "logger": _silent_logger()})
    try:
        metadata = admin.list_topics(timeout=timeout)
    except Exception as exc:  # KafkaException: transport failure / timeout
        why = exc.args[0].str() if exc.args and hasattr(exc.args[0], "str") else str(exc)
        raise BrokerUnreachable(
            f"no Kafka broker answered at kafka.brokers = {config.kafka.brokers} within "
            f"run.connect_timeout = {timeout:g}s ({why}); check kafka.brokers, or start one with "
            "`profilestream broker`"
        ) from None
    names = {role: config.topics.name(role) for role in INPUT_ROLES}
    if any(name not in metadata.topics for name in config.topics.names().values()):
        create_topics(config)
        metadata = admin.list_topics(timeout=timeout)
    partitions = {role: len(metadata.topics[name].partitions) for role, name in names.items()}
    spans = {role: end_offsets(config, name) for role, name in names.items()} if bounded else None
    return partitions, spans


def prepare_recovery(recovery_dir: str | None) -> Path | None:
    """Create and initialise the recovery directory on first use (once, before any worker
    starts); an existing one is resumed from. Anything else there is refused, and so is a
    directory that another run is using (a lock file, held until `release_recovery` or the
    process's end, SIGKILL included)."""
    if recovery_dir is None:
        return None
    path = Path(recovery_dir)
    if path.exists() and not path.is_dir():
        raise RecoveryDirError(f"--recovery-dir {recovery_dir}: exists and is not a directory")
    parts = sorted(path.glob("part-*.sqlite3")) if path.exists() else []
    if not parts and path.exists() and any(p.name != LOCK_NAME for p in path.iterdir()):
        raise RecoveryDirError(f"--recovery-dir {recovery_dir}: the directory is not empty and holds no "
                               "recovery partitions (part-*.sqlite3); give an empty or new directory")
    path.mkdir(parents=True, exist_ok=True)
    _lock(path, recovery_dir)
    parts = sorted(path.glob("part-*.sqlite3"))
    if parts:
        metrics.log("recovery", dir=str(path), state="resume", partitions=len(parts),
                    committed_epoch=_committed_epoch(parts))
        return path
    init_db_dir(path, RECOVERY_PARTITIONS)
    metrics.log("recovery", dir=str(path), state="new", partitions=RECOVERY_PARTITIONS)
    return path


LOCK_NAME = "profilestream.lock"
_LOCKS: dict[Path, object] = {}


def _lock(path: Path, given: str) -> None:
    key = path.resolve()
    if key in _LOCKS:  # this process holds it already
        return
    fh = open(path / LOCK_NAME, "a+", encoding="utf-8")
    try:
        fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        fh.seek(0)
        holder = fh.read().strip() or "another process"
        fh.close()
        raise RecoveryDirError(f"--recovery-dir {given}: in use by another run ({holder}); "
                               "two runs must not share a recovery directory", code=1) from None
    fh.seek(0)
    fh.truncate()
    fh.write(f"pid {os.getpid()} on {socket.gethostname()}\n")
    fh.flush()
    _LOCKS[key] = fh


def release_recovery(path: Path | None) -> None:
    if path is not None:
        fh = _LOCKS.pop(path.resolve(), None)
        if fh is not None:
            fh.close()


def _committed_epoch(parts: list[Path]) -> int | None:
    """The latest epoch whose snapshot is complete (for the log; None if unreadable)."""
    try:
        epochs = []
        for part in parts:
            with sqlite3.connect(f"file:{part}?mode=ro", uri=True, timeout=1) as db:
                row = db.execute("SELECT MAX(commit_epoch) FROM commits").fetchone()
                epochs.append(row[0])
        return None if None in epochs else min(epochs)
    except sqlite3.Error:
        return None


def _recovery_config(path: str | None) -> RecoveryConfig | None:
    return None if path is None else RecoveryConfig(Path(path), backup_interval=timedelta(0))


def run(config, workers: int = 1, processes: int = 1, until_idle: bool = False,
        recovery_dir: str | None = None, metrics_port: int | None = None, logs: bool = False) -> int:
    """Run the dataflow; `until_idle` makes it bounded (end of input = end of time). `logs` turns
    on the JSON log lines on stderr (the `run` command does; in-process callers may not want
    them). Returns the exit code: 0 done, 130 stopped by SIGINT/SIGTERM, 2 bad recovery dir."""
    if logs:
        metrics.setup_logging()
    partitions, spans = input_layout(config, until_idle)
    try:
        recovery = prepare_recovery(recovery_dir)
    except RecoveryDirError as exc:
        print(f"profilestream: {exc}", file=sys.stderr)
        return exc.code
    if metrics_port is not None:
        problem = _port_problem(metrics_port, processes)
        if problem is not None:
            release_recovery(recovery)
            print(f"profilestream: --metrics-port {metrics_port}: {problem}", file=sys.stderr)
            return 2
    snapshot_every = timedelta(milliseconds=config.run.snapshot_interval)
    metrics.log("start", brokers=config.kafka.brokers, mode="bounded" if until_idle else "always-on",
                workers=workers, processes=processes,
                recovery_dir=None if recovery is None else str(recovery),
                snapshot_interval_s=snapshot_every.total_seconds(), metrics_port=metrics_port,
                inputs={config.topics.name(r): partitions[r] for r in INPUT_ROLES})
    if spans is not None:
        metrics.log("partitions", spans={
            f"{config.topics.name(role)}/{p}": {"first": low, "end": end}
            for role in INPUT_ROLES for p, (low, end) in sorted(spans[role].items())})
    job = {"config": config, "workers": workers, "recovery_dir": None if recovery is None else str(recovery),
           "partitions": partitions, "spans": spans, "snapshot_every": snapshot_every,
           "metrics_port": metrics_port, "logs": logs}
    try:
        if processes > 1:
            # the engine's process leaves reading and decoding to the others (`engine_worker`)
            job["engine_process"] = engine_worker(processes * workers) // workers
            return _run_cluster(job, processes)
        return _execute(job, None, None)
    finally:
        release_recovery(recovery)


def _port_problem(port: int, processes: int) -> str | None:
    """Why the metrics endpoint(s) could not listen on `port` (.. + processes - 1), if so."""
    for p in range(port, port + processes):
        try:
            with socket.create_server(("0.0.0.0", p)):
                pass
        except (OSError, OverflowError) as exc:
            return f"cannot listen on port {p}: {getattr(exc, 'strerror', None) or exc}"
    return None


def _broker_error(exc: BaseException) -> BrokerError | None:
    """A `BrokerError` raised inside a step reaches us wrapped by Bytewax: find it."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, BrokerError):
            return exc
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return None


class _GracefulStop:
    """SIGINT / SIGTERM stop the run in order: the input partitions end their reads (`STOP`), the
    engine step flushes what is due (a bounded run does not treat this as the end of time), the
    sink delivers, and with recovery the last epoch is snapshotted. A second signal (a second
    later or more; a cluster's parent forwards the first one) interrupts at once."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self, fields: dict):
        self.fields = fields
        self.first: float | None = None
        self.previous: dict = {}

    def __enter__(self) -> "_GracefulStop":
        STOP.clear()
        try:
            for sig in self.SIGNALS:
                self.previous[sig] = signal.signal(sig, self._handle)
        except ValueError:  # not the main thread: leave signals alone
            pass
        return self

    def _handle(self, signum, frame) -> None:
        now = time.monotonic()
        if self.first is None:
            self.first = now
            STOP.set()
            metrics.log("stopping", signal=signal.Signals(signum).name, **self.fields)
        elif now - self.first >= 1.0:
            raise KeyboardInterrupt

    def __exit__(self, *exc) -> None:
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)

    @property
    def stopped(self) -> bool:
        return self.first is not None


def tune_gc() -> None:
    """The engine state is millions of long-lived objects: with the default thresholds CPython's
    cyclic GC walks all of them again and again as the state grows (measured: +41% throughput at
    1M events with this setting, BENCHMARKS.md). Cycles are rare in the state; they are still
    collected, just less often."""
    gc.set_threshold(50_000, 50, 1_000)


def _execute(job: dict, process_id: int | None, addresses: list[str] | None) -> int:
    tune_gc()
    if job.get("logs"):
        metrics.setup_logging()
    metrics.COUNTERS.reset()
    fields = {} if process_id is None else {"process": process_id}
    port = job.get("metrics_port")
    server = None
    if port is not None:
        port += process_id or 0
        server = metrics.serve(port)
        metrics.log("metrics", port=port, path="/metrics", **fields)
    engine_process = job.get("engine_process")
    inflight = None
    if job.get("inflight") is not None:  # a cluster: readers wait for the engine (`io.inflight`)
        inflight = InFlight(job["inflight"], len(addresses or ()), process_id or 0, engine_process)
    flow = build_flow(job["config"], job["partitions"], job["spans"], recovery=job["recovery_dir"] is not None,
                      read=process_id is None or process_id != engine_process, inflight=inflight)
    progress = metrics.Progress(job["config"].run.progress_interval / 1000, **fields).start()
    started = time.monotonic()
    try:
        with _GracefulStop(fields) as stop:
            cli_main(flow, workers_per_process=job["workers"], process_id=process_id, addresses=addresses,
                     epoch_interval=job["snapshot_every"], recovery_config=_recovery_config(job["recovery_dir"]))
    except KeyboardInterrupt:
        metrics.log("end", reason="interrupted", seconds=round(time.monotonic() - started, 3),
                    **fields, **metrics.COUNTERS.summary())
        raise
    except Exception as exc:
        broker = _broker_error(exc)
        if isinstance(exc.__cause__, KeyboardInterrupt):  # Bytewax's "signal received"
            metrics.log("end", reason="interrupted", seconds=round(time.monotonic() - started, 3), **fields)
            raise KeyboardInterrupt from None
        metrics.log("end", logging.ERROR, reason="failed", error=str(broker or exc).splitlines()[0],
                    seconds=round(time.monotonic() - started, 3), **fields)
        if broker is not None:
            raise broker from None
        raise
    finally:
        progress.stop()
        if server is not None:
            server.shutdown()
            server.server_close()
    metrics.log("end", reason="stopped" if stop.stopped else "done", seconds=round(time.monotonic() - started, 3),
                **fields, **metrics.COUNTERS.summary())
    return 130 if stop.stopped else 0


def _free_ports(n: int) -> list[int]:
    sockets = [socket.socket() for _ in range(n)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def _run_cluster(job: dict, processes: int) -> int:
    """Start `processes` copies of this module as one Bytewax cluster on loopback. The parent has
    resolved the configuration (file and environment) and measured the input; the children get
    that job pickled, so every process runs with exactly the same settings and input bounds."""
    addresses = [f"127.0.0.1:{port}" for port in _free_ports(processes)]
    with tempfile.TemporaryDirectory(prefix="profilestream-") as tmp:
        path = Path(tmp) / "job.pickle"
        inflight = Path(tmp) / "inflight"  # the counters the readers pace themselves by
        InFlight.create(inflight, processes)
        path.write_bytes(pickle.dumps({**job, "addresses": addresses, "inflight": str(inflight)}))
        children = [subprocess.Popen([sys.executable, "-m", "profilestream.runner", str(path), str(i)])
                    for i in range(processes)]
        def forward(signum, frame):
            for child in children:
                if child.poll() is None:
                    child.send_signal(signum)

        previous = {sig: signal.signal(sig, forward) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            codes = [child.wait() for child in children]
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
    return max(codes, key=abs)


def _child(job_path: str, process_id: str) -> None:
    job = pickle.loads(Path(job_path).read_bytes())
    try:
        code = _execute(job, int(process_id), job["addresses"])
    except KeyboardInterrupt:
        code = 130
    sys.exit(code)


def describe(config) -> str:
    """The dataflow's steps and topics, Kafka Streams style, read off the built flow itself."""
    partitions = {role: config.topics.partitions for role in INPUT_ROLES}
    flow = build_flow(config, partitions)
    lines = ["Topology: profilestream", ""]
    lines.append("  Sources (Avro): " + ", ".join(
        f"{config.topics.name(r)} ({partitions[r]} partitions)" for r in INPUT_ROLES))
    lines.append("  Steps:")
    for step in flow.substeps:
        lines.extend(_steps(step, "    "))
    lines.append("  Sinks (Avro): " + ", ".join(
        f"{config.topics.name(r)}" for r in ("profiles", "merges", "triggers", "crm_feed", "dead_letters")))
    return "\n".join(lines)


def _steps(step, indent: str) -> list[str]:
    return [f"{indent}{step.step_id.split('.')[-1]:<22} {type(step).__name__}"]


if __name__ == "__main__":
    _child(*sys.argv[1:])
