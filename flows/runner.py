"""Running the profile dataflow: one process or several, bounded or always-on.

`run` checks the brokers answer before anything starts (a clear error beats a silent hang), reads
the input topics' partition counts, and hands the dataflow to Bytewax. With `processes > 1` it
starts that many copies of itself as a Bytewax cluster on loopback and waits for all of them.

Recovery: an always-on run keeps its state by default (`recovery_dir_for`: under `run.state_dir`,
one directory per set of brokers and topic names), so that stopping it and starting it again with
the same command goes on where it stopped; `--recovery-dir D` names the directory, `--no-recovery`
(or `run.state_dir = "off"`) turns it off, and a bounded run (`--until-idle`) is stateless unless
given `--recovery-dir`. Bytewax snapshots the state at the end of every epoch, and the
epoch length is `run.snapshot_interval`. The input partitions snapshot the next offset to read,
the engine step the pickled Engine; both belong to the same epoch, so a run killed at any point
resumes from the last complete epoch with state and offsets that match, and writes again the
outputs after it (at-least-once; the outputs are deterministic, trigger ids included). A bounded
run resumed measures the input's end anew: every partition reads from its snapshot offset to the
end it has now. `D` is created with one recovery partition on first use; Bytewax keeps only the
latest complete snapshot there (`backup_interval` 0: it is how long superseded snapshots are kept
for an external backup to copy, not how often snapshots are taken).

Clusters: `processes > 1` starts that many copies of this module as a Bytewax cluster on loopback
(`_run_cluster`); they share the one recovery directory, and a resumed run may have another
number of processes. Across machines (`addresses` and `process_id`, as Bytewax's own runner takes
them) every process is started by hand and runs `run` itself (so each checks its brokers and topics
before the flow starts): it joins the cluster and reads its share of the input partitions, and
its recovery directory is `D/process-<i>` with recovery partition i of as many as there are
processes (Bytewax finds the partitions of a cluster across its processes' local directories).
That layout fixes the number of processes: a process whose directory was made for another
number refuses to start (exit 2). The local cluster's in-flight pacing (`kafka.inflight`) needs a
shared file and is off across machines.

Operations: JSON log lines on stderr (`start`, `partitions`, `partition`, `progress` every
`run.progress_interval` (10s), `end`) and, with `metrics_port`, a Prometheus endpoint
(`profilestream.ops.metrics`); in a cluster, process i serves on `metrics_port + i`.

Before anything is read (issue 11), everything that can be wrong is checked, so a mistake is one
line and not a failure minutes into the run: the rules (segments, the `scores.model` file), the
recovery directory (writable, not full; it holds personal data, so it is made 0700 and the run
keeps umask 077: what Bytewax's SQLite writes there is 0600), the metrics port, the broker, and
every configured topic. A run never creates topics (`profilestream topics create` does): a
missing one is an error naming it (exit 1). The topics' ids and partition counts noted here are
watched while the run goes on (`kafka.TopicWatch`).

A failure while the run goes on is one line on stderr and exit 1 (`RunFailed`): a broker
problem as it is, a full or read-only recovery disk by name, anything else with the error that
caused it; the whole error is kept in the `end` log line. A Rust panic in Bytewax prints its
message and backtrace straight to the process's stderr before Python sees the error, so the
`run` command passes the native stderr through a filter while the dataflow runs, which holds
back that panic (`_NativeStderr`); its JSON log lines go to the terminal as before.
"""

from __future__ import annotations

import fcntl
import functools
import gc
import hashlib
import json
import logging
import os
import pickle
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from datetime import timedelta
from pathlib import Path
from types import FrameType
from typing import IO, Any, TextIO

from bytewax.recovery import RecoveryConfig, init_db_dir
from bytewax.run import cli_main

from profilestream.codec import registry
from profilestream.domain.roles import INPUT_ROLES
from profilestream.flows import changelog
from profilestream.flows.commits import committed_epoch
from profilestream.flows.placement import engine_worker
from profilestream.flows.profiles import build_flow
from profilestream.flows.snapshot import Refused
from profilestream.kafka import sink
from profilestream.kafka.clients import (
    BrokerError,
    BrokerUnreachable,
    changed,
    end_offsets,
    require_topics,
    topic_changed,
    topic_states,
    watch_topics,
)
from profilestream.kafka.inflight import InFlight
from profilestream.kafka.source import STOP
from profilestream.kafka.transfers import ensure_topic as ensure_transfers_topic
from profilestream.ops import metrics
from profilestream.ops.lifetime import die_with_parent
from profilestream.store import StoreError, check_writable, make_private, private_files

RECOVERY_PARTITIONS = 1  # a single process or a local cluster; across machines, one a process
STATE_OFF = "off"  # `run.state_dir`: no default recovery directory

__all__ = [
    "BrokerUnreachable",
    "RecoveryDirError",
    "RunFailed",
    "default_state_dir",
    "describe",
    "recovery_dir_for",
    "run",
]


class RunFailed(RuntimeError):
    """The run failed while it went on; the message is the one line for the user."""

    def __init__(self, message: str, code: int = 1):
        super().__init__(message)
        self.code = code


class RecoveryDirError(ValueError):
    """`--recovery-dir` names something that is not (and cannot become) a recovery directory
    (exit code 2), or one that another run is using (exit code 1)."""

    def __init__(self, message: str, code: int = 2):
        super().__init__(message)
        self.code = code


def input_layout(config: Any, bounded: bool) -> tuple[dict[str, int], dict[str, Any] | None, dict[str, Any]]:
    """Partition counts of the input topics, for a bounded run the exact offsets each input
    partition starts and ends at, and the state (id, partition count) of every configured topic
    for the watch. Every configured topic must exist: `MissingTopics` names those that do not."""
    states = require_topics(config, config.topics.names().values())
    names = {role: config.topics.name(role) for role in INPUT_ROLES}
    partitions = {role: states[name].partitions for role, name in names.items()}
    spans = {role: end_offsets(config, name) for role, name in names.items()} if bounded else None
    return partitions, spans, states


def default_state_dir(config: Any) -> Path | None:
    """The always-on run's recovery directory when none is given: `run.state_dir` (relative to
    the working directory) / a hash of the brokers and the topic names. Why the hash: two runs
    against other topics or another cluster (tests, a staging copy) must never resume from each
    other's offsets, and the same command must find its own state again. None when
    `run.state_dir` is "off"."""
    base = config.run.state_dir.strip()
    if base.lower() == STATE_OFF:
        return None
    identity = json.dumps({"brokers": config.kafka.brokers, "topics": config.topics.names()}, sort_keys=True)
    return Path(base) / hashlib.sha256(identity.encode()).hexdigest()[:16]


def recovery_dir_for(config: Any, given: str | None, no_recovery: bool, until_idle: bool) -> str | None:
    """The recovery directory a `run` uses: `--recovery-dir` if given, none with `--no-recovery`
    or for a bounded run (a replay or a test computes everything again), else the default."""
    if no_recovery or given is not None:
        return None if no_recovery else given
    found = None if until_idle else default_state_dir(config)
    return None if found is None else str(found)


def prepare_recovery(recovery_dir: str | None, part: int = 0, count: int = RECOVERY_PARTITIONS) -> Path | None:
    """Create and initialise the recovery directory on first use (once, before any worker
    starts); an existing one is resumed from. Anything else there is refused, and so is a
    directory that another run is using (a lock file, held until `release_recovery` or the
    process's end, SIGKILL included), and one whose partitions were made for another number of
    them (`part` of `count`: a process of a cluster across machines holds its own)."""
    if recovery_dir is None:
        return None
    path = Path(recovery_dir)
    if path.exists() and not path.is_dir():
        raise RecoveryDirError(f"--recovery-dir {recovery_dir}: exists and is not a directory")
    parts = sorted(path.glob("part-*.sqlite3")) if path.exists() else []
    if not parts and path.exists() and any(p.name != LOCK_NAME for p in path.iterdir()):
        raise RecoveryDirError(
            f"--recovery-dir {recovery_dir}: the directory is not empty and holds no "
            "recovery partitions (part-*.sqlite3); give an empty or new directory"
        )
    try:  # a read-only or full disk is told now, not as a Rust panic in the middle of the run
        check_writable(path, "--recovery-dir")
    except StoreError as exc:
        raise RecoveryDirError(str(exc), code=exc.code) from None
    with private_files():
        _lock(path, recovery_dir)
        try:
            return _open_recovery(path, part, count)
        except BaseException:
            release_recovery(path)
            raise


def _open_recovery(path: Path, part: int, count: int) -> Path:
    """Resume from the partitions there, or create them (SQLite: a full disk panics in Rust).
    The `recovery` log line comes later (`_log_recovery`), after the `start` line: a run that
    then finds no broker says so in one line."""
    parts = sorted(path.glob("part-*.sqlite3"))
    if parts:
        found = _partitions(parts)
        if found is not None and found != {(part, count)}:
            raise RecoveryDirError(_layout_problem(path, found, part, count))
        return path
    try:
        with _NativeStderr(True):  # a full disk panics in Rust: one line (below), no backtrace
            _init_partition(path, part, count)
    except BaseException as exc:  # pyo3's PanicException is a BaseException
        if isinstance(exc, (KeyboardInterrupt, SystemExit)):
            raise
        raise RecoveryDirError(
            _disk_problem(str(path), exc) or f"--recovery-dir {path}: {_summary(exc)}", code=1
        ) from None
    make_private(path)
    return path


def _log_recovery(path: Path) -> None:
    """`resume` when a snapshot is there to go on from, else `new`."""
    parts = sorted(path.glob("part-*.sqlite3"))
    epoch = committed_epoch(parts)
    metrics.log(
        "recovery",
        dir=str(path),
        state="new" if epoch is None else "resume",
        partitions=[index for index, _ in sorted(_partitions(parts) or ())],
        committed_epoch=epoch,
    )


def _init_partition(path: Path, part: int, count: int) -> None:
    """Recovery partition `part` of `count` in `path`. Bytewax makes all `count` in one
    directory; across machines each process keeps only its own, so the others are made in a
    scratch directory beside it (same disk) and dropped."""
    if count == 1:
        init_db_dir(path, 1)
        return
    with tempfile.TemporaryDirectory(prefix=".init-", dir=path) as scratch:
        init_db_dir(Path(scratch), count)
        (Path(scratch) / f"part-{part}.sqlite3").rename(path / f"part-{part}.sqlite3")


def _partitions(parts: list[Path]) -> set[tuple[int, int]] | None:
    """(index, count) of the recovery partitions in these files (None if unreadable)."""
    try:
        found: set[tuple[int, int]] = set()
        for file in parts:
            with sqlite3.connect(f"file:{file}?mode=ro", uri=True, timeout=1) as db:
                found.update(db.execute("SELECT part_index, part_count FROM parts").fetchall())
        return found
    except sqlite3.Error:
        return None


def _layout_problem(path: Path, found: set[tuple[int, int]], part: int, count: int) -> str:
    """Why a recovery directory cannot serve this process, in one line."""
    had = sorted(found)
    made = (
        "a single process or a local cluster"
        if had == [(0, 1)]
        else "process " + ", ".join(str(i) for i, _ in had) + f" of a cluster of {had[0][1]} processes"
    )
    wanted = "a single process or a local cluster" if count == 1 else f"process {part} of a cluster of {count}"
    return (
        f"--recovery-dir {path}: its snapshots were made for {made}, and this run is {wanted}; "
        "a cluster across machines resumes with the same processes only (its state is split by "
        "process): start it with the same --addresses, or give a new recovery directory (every "
        "input is then read again)"
    )


LOCK_NAME = "profilestream.lock"
_LOCKS: dict[Path, IO[str]] = {}


def _lock(path: Path, given: str) -> None:
    key = path.resolve()
    if key in _LOCKS:  # this process holds it already
        return
    fh = open(path / LOCK_NAME, "a+", encoding="utf-8")  # noqa: SIM115 (held past this call: the lock)
    try:
        fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        fh.seek(0)
        holder = fh.read().strip() or "another process"
        fh.close()
        raise RecoveryDirError(
            f"--recovery-dir {given}: in use by another run ({holder}); two runs must not share a recovery directory",
            code=1,
        ) from None
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


def _recovery_config(path: str | None) -> RecoveryConfig | None:
    return None if path is None else RecoveryConfig(Path(path), backup_interval=timedelta(0))


def run(
    config: Any,
    workers: int = 1,
    processes: int = 1,
    until_idle: bool = False,
    recovery_dir: str | None = None,
    metrics_port: int | None = None,
    logs: bool = False,
    addresses: list[str] | None = None,
    process_id: int | None = None,
) -> int:
    """Run the dataflow; `until_idle` makes it bounded (end of input = end of time). `logs` turns
    on the JSON log lines on stderr (the `run` command does; in-process callers may not want
    them). With `addresses` and `process_id` this process is one of a cluster across machines
    (module doc). Returns the exit code: 0 done, 130 stopped by SIGINT/SIGTERM, 2 bad usage (a
    flag, the recovery dir), 1 failed. Raises `ConfigError` (bad rules), `BrokerError` (no broker,
    missing or changed topics) and `RunFailed` (the run failed while it went on)."""
    problem = usage_problem(workers, processes, metrics_port) or cluster_problem(addresses, process_id, processes)
    if problem is not None:
        print(f"profilestream: {problem}", file=sys.stderr)
        return 2
    config.rules()  # segments and the scores.model file: a ConfigError now, not after reading began
    if logs:
        metrics.setup_logging()
    machines = addresses is not None and process_id is not None
    with private_files():
        try:
            if machines and recovery_dir is not None:  # one directory, and partition, per process
                recovery_dir = str(Path(recovery_dir) / f"process-{process_id}")
                recovery = prepare_recovery(recovery_dir, process_id or 0, len(addresses or ()))
            else:
                recovery = prepare_recovery(recovery_dir)
        except RecoveryDirError as exc:
            print(f"profilestream: {exc}", file=sys.stderr)
            return exc.code
        try:
            if metrics_port is not None:
                local = 1 if machines else processes  # a local cluster's process i serves on P+i
                problem = _port_problem(config.run.metrics_host, metrics_port, local)
                if problem is not None:
                    print(f"profilestream: --metrics-port {metrics_port}: {problem}", file=sys.stderr)
                    return 2
            # before the flow starts, the brokers and every configured topic are checked here
            partitions, spans, topics = input_layout(config, until_idle)
            job = _job(config, workers, processes, until_idle, recovery, metrics_port, logs, partitions, spans, topics)
            # the transfer loop's internal topic (created if missing) and where this run starts
            # reading it: measured before any process of the cluster can write to it
            job["transfers"] = ensure_transfers_topic(config)
            # every topic's schema under `<topic>-value`, before the first record is written: a
            # registry that does not answer stops the run now, naming schema_registry.url (exit 2)
            wire = registry.wire_for(config)
            if wire is not None:
                wire.register()
            if machines:
                return _join(job, addresses or [], process_id or 0)
            return _start(job, processes)
        finally:
            release_recovery(recovery)
            if recovery is not None:
                make_private(recovery)


def cluster_problem(addresses: list[str] | None, process_id: int | None, processes: int = 1) -> str | None:
    """What is wrong with `--addresses` / `--process-id` (a cluster across machines), naming the
    flag; None if nothing (or neither is given)."""
    if addresses is None and process_id is None:
        return None
    if addresses is None or process_id is None:
        return "--addresses and --process-id go together (every process of the cluster gets both)"
    if processes != 1:
        return "--processes starts a local cluster; a cluster across machines takes --addresses and --process-id"
    for address in addresses:
        host, _, port = address.rpartition(":")
        if not host or not port.isdigit() or not 1 <= int(port) <= 65535:
            return f"--addresses {','.join(addresses)}: {address!r} is not host:port"
    if len(set(addresses)) != len(addresses):
        return f"--addresses {','.join(addresses)}: an address is given twice"
    if not 0 <= process_id < len(addresses):
        return (
            f"--process-id {process_id}: must be from 0 to {len(addresses) - 1} (the index of this process's address)"
        )
    return None


def usage_problem(workers: int, processes: int, metrics_port: int | None) -> str | None:
    """What is wrong with the run's flags, naming the flag; None if nothing."""
    for flag, value in (("--workers", workers), ("--processes", processes)):
        if value < 1:
            return f"{flag} {value}: must be 1 or more"
    if metrics_port is not None and not 1 <= metrics_port <= 65536 - processes:
        return f"--metrics-port {metrics_port}: must be a port from 1 to {65536 - processes}"
    return None


def _job(
    config: Any,
    workers: int,
    processes: int,
    until_idle: bool,
    recovery: Path | None,
    metrics_port: int | None,
    logs: bool,
    partitions: dict[str, int],
    spans: dict[str, Any] | None,
    topics: dict[str, Any],
) -> dict[str, Any]:
    """What every process of the run needs (pickled for a local cluster's children), and the
    `start` and `partitions` log lines that say it."""
    snapshot_every = timedelta(milliseconds=config.run.snapshot_interval)
    metrics.log(
        "start",
        brokers=config.kafka.brokers,
        mode="bounded" if until_idle else "always-on",
        workers=workers,
        processes=processes,
        recovery_dir=None if recovery is None else str(recovery),
        snapshot_interval_s=snapshot_every.total_seconds(),
        metrics_port=metrics_port,
        inputs={config.topics.name(r): partitions[r] for r in INPUT_ROLES},
    )
    if recovery is not None:
        _log_recovery(recovery)
    if spans is not None:
        metrics.log(
            "partitions",
            spans={
                f"{config.topics.name(role)}/{p}": {"first": low, "end": end}
                for role in INPUT_ROLES
                for p, (low, end) in sorted(spans[role].items())
            },
        )
    return {
        "config": config,
        "workers": workers,
        "recovery_dir": None if recovery is None else str(recovery),
        "partitions": partitions,
        "spans": spans,
        "snapshot_every": snapshot_every,
        "metrics_port": metrics_port,
        "logs": logs,
        "topics": topics,
    }


def _start(job: dict[str, Any], processes: int) -> int:
    """One process, or a local cluster of `processes`."""
    if processes > 1:
        job["engine_process"] = _engine_process(processes, job["workers"])
        return _run_cluster(job, processes)
    return _execute(job, None, None)


def _engine_process(processes: int, workers: int) -> int:
    """The process whose worker runs the engine step: it leaves reading and decoding to the
    others (`engine_worker`). Every process of a cluster works it out alike."""
    return engine_worker(processes * workers) // workers


def _join(job: dict[str, Any], addresses: list[str], process_id: int) -> int:
    """This process as process `process_id` of a cluster across machines: it serves metrics on
    the port itself (each machine its own) and waits for the cluster's other processes."""
    if len(addresses) > 1:
        job["engine_process"] = _engine_process(len(addresses), job["workers"])
    job["metrics_own_port"] = True
    metrics.log("cluster", process=process_id, addresses=addresses)
    return _execute(job, process_id, addresses)


def _port_problem(host: str, port: int, processes: int) -> str | None:
    """Why the metrics endpoint(s) could not listen on `host`:`port` (.. + processes - 1), if so."""
    for p in range(port, port + processes):
        try:
            with socket.create_server((host, p)):
                pass
        except (OSError, OverflowError) as exc:
            return f"cannot listen on port {p}: {getattr(exc, 'strerror', None) or exc}"
    return None


def _broker_error(exc: BaseException) -> BrokerError | None:
    """A `BrokerError` raised inside a step reaches us wrapped by Bytewax: find it."""
    return next((e for e in _chain(exc) if isinstance(e, BrokerError)), None)


class _GracefulStop:
    """SIGINT / SIGTERM stop the run in order: the input partitions end their reads (`STOP`), the
    engine step flushes what is due (a bounded run does not treat this as the end of time), the
    sink delivers, and with recovery the last epoch is snapshotted. A second signal (a second
    later or more; a cluster's parent forwards the first one) interrupts at once."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self, fields: dict[str, Any]):
        self.fields = fields
        self.first: float | None = None
        self.previous: dict[int, Any] = {}

    def __enter__(self) -> _GracefulStop:
        STOP.clear()
        try:
            for sig in self.SIGNALS:
                self.previous[sig] = signal.signal(sig, self._handle)
        except ValueError:  # not the main thread: leave signals alone
            pass
        return self

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        now = time.monotonic()
        if self.first is None:
            self.first = now
            STOP.set()
            metrics.log("stopping", signal=signal.Signals(signum).name, **self.fields)
        elif now - self.first >= 1.0:
            raise KeyboardInterrupt

    def __exit__(self, *exc: object) -> None:
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


def _execute(job: dict[str, Any], process_id: int | None, addresses: list[str] | None) -> int:
    tune_gc()
    if job.get("logs"):
        metrics.setup_logging()
    metrics.COUNTERS.reset()
    fields = {} if process_id is None else {"process": process_id}
    port = job.get("metrics_port")
    server = None
    if port is not None:
        if not job.get("metrics_own_port"):  # a local cluster: process i on P+i
            port += process_id or 0
        host = job["config"].run.metrics_host
        server = metrics.serve(port, host)
        metrics.COUNTERS.mark_ready()  # `run` has checked the brokers and topics: /readyz answers 200
        metrics.log("metrics", host=host, port=port, path="/metrics", **fields)
    engine_process = job.get("engine_process")
    inflight = None
    if job.get("inflight") is not None:  # a cluster: readers wait for the engine (`io.inflight`)
        inflight = InFlight(job["inflight"], len(addresses or ()), process_id or 0, engine_process or 0)
    # before the flow is built: its readers and writers take the watch when Bytewax builds them
    watch = watch_topics(job["config"].kafka.client_config(), job.get("topics"))
    sink.CLOSE_FAILURES.clear()
    progress = None
    started = time.monotonic()
    native = _NativeStderr(job.get("logs", False))
    try:
        flow = build_flow(
            job["config"],
            job["partitions"],
            job["spans"],
            recovery=job["recovery_dir"] is not None,
            read=process_id is None or process_id != engine_process,
            inflight=inflight,
            transfers=job.get("transfers"),
            changelog=None if job["recovery_dir"] is None else Path(job["recovery_dir"]) / changelog.NAME,
        )
        progress = metrics.Progress(job["config"].run.progress_interval / 1000, **fields).start()
        with _GracefulStop(fields) as stop, native:
            cli_main(
                flow,
                workers_per_process=job["workers"],
                process_id=process_id,
                addresses=addresses,
                epoch_interval=job["snapshot_every"],
                recovery_config=_recovery_config(job["recovery_dir"]),
            )
        _raise_late(watch)  # what the sinks' close found, or the watch found last
    except KeyboardInterrupt:
        if progress is not None:  # the `end` line is the last: no progress line may follow it
            progress.stop()
        metrics.log(
            "end",
            reason="interrupted",
            seconds=round(time.monotonic() - started, 3),
            **fields,
            **metrics.COUNTERS.summary(),
        )
        raise
    except BaseException as exc:  # pyo3's PanicException is no Exception
        if isinstance(exc, SystemExit):
            raise
        if progress is not None:  # the `end` line is the last: no progress line may follow it
            progress.stop()
        if isinstance(exc.__cause__, KeyboardInterrupt):  # Bytewax's "signal received"
            metrics.log("end", reason="interrupted", seconds=round(time.monotonic() - started, 3), **fields)
            raise KeyboardInterrupt from None
        if watch is not None and watch.problem is not None:  # a changed topic explains what followed
            try:
                watch.raise_problem()
            except BrokerError as topic_error:
                exc = topic_error
        message = _failure(exc, job["recovery_dir"])
        metrics.log(
            "end",
            logging.ERROR,
            reason="failed",
            error=message,
            detail=_detail(exc, native.panic),
            seconds=round(time.monotonic() - started, 3),
            **fields,
        )
        broker = _broker_error(exc)
        if broker is not None:
            raise broker from None
        refused = _refused(exc, job["recovery_dir"])
        if refused is not None:  # a recovery directory this build cannot resume: a usage error
            raise RunFailed(refused, code=2) from None
        raise RunFailed(message) from None
    finally:
        watch_topics(None, None)
        if progress is not None:
            progress.stop()
        if server is not None:
            server.shutdown()
            server.server_close()
    metrics.log(
        "end",
        reason="stopped" if stop.stopped else "done",
        seconds=round(time.monotonic() - started, 3),
        **fields,
        **metrics.COUNTERS.summary(),
    )
    return 130 if stop.stopped else 0


def _raise_late(watch: Any) -> None:
    """Failures found where they could not be raised (`sink.CLOSE_FAILURES`): a changed topic first."""
    if watch is not None:
        watch.raise_problem()
    if sink.CLOSE_FAILURES:
        raise sink.CLOSE_FAILURES[0]


class _NativeStderr:
    """While the dataflow runs, what native code (Bytewax's Rust, librdkafka) writes to the
    process's stderr goes through a pipe and is passed on to the real stderr as it comes, except
    a Rust panic's message and backtrace: from a line `thread '...' panicked at` on, the text is
    held (`panic`) and the run's one-line error replaces it (see the module doc); it is passed on
    after all if the run then ends well. Python's own stderr (the JSON log lines) writes to the
    real stderr directly. Off (`enabled` False) for in-process callers of `run`."""

    PANIC = re.compile(r"^thread '.*' panicked at ")

    def __init__(self, enabled: bool):
        self.enabled = enabled
        self.panic = ""
        self._saved: int | None = None
        self._python: TextIO | None = None

    def __enter__(self) -> _NativeStderr:
        if not self.enabled:
            return self
        sys.stderr.flush()
        try:
            self._saved = os.dup(2)
        except OSError:  # no stderr at all: nothing to filter
            return self
        try:
            own = sys.stderr.fileno() == 2
        except (AttributeError, OSError, ValueError):
            own = False
        if own:  # Python's writes go to the real stderr, not through the pipe
            self._python = sys.stderr
            sys.stderr = open(
                os.dup(self._saved),
                "w",
                encoding=getattr(self._python, "encoding", None) or "utf-8",
                errors="backslashreplace",
                buffering=1,
            )
        read, write = os.pipe()
        os.dup2(write, 2)
        os.close(write)
        self._held: list[bytes] = []
        self._reader = threading.Thread(
            target=self._forward, args=(read, os.dup(self._saved)), daemon=True, name="native-stderr"
        )
        self._reader.start()
        return self

    def _forward(self, read: int, out: int) -> None:
        with os.fdopen(read, "rb") as pipe, os.fdopen(out, "wb", buffering=0) as real:
            for line in pipe:
                if self._held or self.PANIC.match(line.decode("utf-8", "replace")):
                    self._held.append(line)
                else:
                    real.write(line)

    def __exit__(self, *exc: object) -> None:
        if self._saved is None:
            return
        os.dup2(self._saved, 2)  # closes the pipe's last write end: the reader sees its end
        self._reader.join(5)
        if self._python is not None:  # back first; left open: a log line may be on its way to it
            spare, sys.stderr, self._python = sys.stderr, self._python, None
            spare.flush()
        os.close(self._saved)
        self._saved = None
        self.panic = b"".join(self._held).decode("utf-8", "replace")
        if exc[0] is None and self.panic:  # it ended well: nothing replaces what was said
            sys.stderr.write(self.panic)
            sys.stderr.flush()


_DISK_FULL = ("DiskFull", "disk is full", "No space left")
_READ_ONLY = ("ReadOnly", "readonly database", "Read-only file system")


def _chain(exc: BaseException) -> list[BaseException]:
    """The error, the one it was raised from or during, and so on (Bytewax wraps steps' errors)."""
    found: list[BaseException] = []
    seen: set[int] = set()
    link: BaseException | None = exc
    while link is not None and id(link) not in seen:
        found.append(link)
        seen.add(id(link))
        link = link.__cause__ or link.__context__
    return found


def _summary(exc: BaseException) -> str:
    """The error that caused it all (Bytewax wraps a step's error in its own), in one line."""
    root = _chain(exc)[-1]
    text = str(root).strip().splitlines()
    return f"{type(root).__name__}: {text[0]}" if text else type(root).__name__


def _disk_problem(recovery_dir: str, exc: BaseException) -> str | None:
    """A full or read-only recovery disk, from the error SQLite gave Bytewax (or None)."""
    text = " ".join(str(e) for e in _chain(exc))
    if any(word in text for word in _DISK_FULL):
        return (
            f"--recovery-dir {recovery_dir}: the disk is full (database or disk is full); free some "
            "space and start the run again: it resumes from the last complete snapshot"
        )
    if any(word in text for word in _READ_ONLY):
        return f"--recovery-dir {recovery_dir}: can no longer be written (read-only file system)"
    return None


def _refused(exc: BaseException, recovery_dir: str | None) -> str | None:
    """Why the recovery directory cannot be resumed (`snapshot.Refused`, raised where Bytewax
    builds a step from it), or None."""
    for error in _chain(exc):
        if isinstance(error, Refused):
            return f"--recovery-dir {recovery_dir}: {error}"
        text = str(error)
        if "Refused: " in text:
            return f"--recovery-dir {recovery_dir}: " + text.split("Refused: ", 1)[1].strip().splitlines()[0]
    return None


def _failure(exc: BaseException, recovery_dir: str | None) -> str:
    """The one line that says why the run failed."""
    broker = _broker_error(exc)
    if broker is not None:
        return str(broker)
    problem = _disk_problem(recovery_dir, exc) if recovery_dir is not None else None
    return problem or f"the run failed: {_summary(exc)}"


def _detail(exc: BaseException, panic: str) -> str:
    """The whole error, for the `end` log line (the user sees `_failure`'s line)."""
    import traceback

    text = "".join(traceback.format_exception(exc)) + (f"\n{panic}" if panic else "")
    return text[-8000:]


def _free_ports(n: int) -> list[int]:
    sockets = [socket.socket() for _ in range(n)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def _run_cluster(job: dict[str, Any], processes: int) -> int:
    """Start `processes` copies of this module as one Bytewax cluster on loopback. The parent has
    resolved the configuration (file and environment) and measured the input; the children get
    that job pickled, so every process runs with exactly the same settings and input bounds."""
    addresses = [f"127.0.0.1:{port}" for port in _free_ports(processes)]
    with tempfile.TemporaryDirectory(prefix="profilestream-") as tmp:
        path = Path(tmp) / "job.pickle"
        inflight = Path(tmp) / "inflight"  # the counters the readers pace themselves by
        InFlight.create(inflight, processes)
        path.write_bytes(pickle.dumps({**job, "addresses": addresses, "inflight": str(inflight)}))
        parent = os.getpid()
        children = [
            subprocess.Popen(  # killed by the kernel if this process dies: no cluster left running
                [sys.executable, "-m", "profilestream.flows.runner", str(path), str(i)],
                preexec_fn=functools.partial(die_with_parent, parent),
            )
            for i in range(processes)
        ]

        def forward(signum: int, frame: FrameType | None) -> None:
            for child in children:
                if child.poll() is None:
                    child.send_signal(signum)

        previous = {sig: signal.signal(sig, forward) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            codes = [child.wait() for child in children]
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
    return _cluster_code(job, codes)


def _cluster_code(job: dict[str, Any], codes: list[int]) -> int:
    """The cluster's exit code. A process killed by a signal other than our own stop signals
    (SIGSEGV: librdkafka 2.16 crashes in its metadata cache when a topic it reads is deleted, on
    Tansu at least) said nothing itself: say why in one line, the topics' change if that was it."""
    crashed = [(i, -code) for i, code in enumerate(codes) if code < 0 and -code not in (signal.SIGINT, signal.SIGTERM)]
    if not crashed:
        return max(codes, key=abs)
    if not any(code in (1, 2) for code in codes):  # no process has told its own failure
        problem = _topics_problem(job)
        i, signum = crashed[0]
        print(
            "profilestream: " + (problem or f"process {i} of the cluster died of {signal.Signals(signum).name}"),
            file=sys.stderr,
            flush=True,
        )
    return 1


def _topics_problem(job: dict[str, Any]) -> str | None:
    """The change of a topic since the run started (`kafka.changed`), as the watch would tell it."""
    config, expected = job["config"], job.get("topics") or {}
    try:
        now = topic_states(config, expected)
    except BrokerError:
        return None
    for name, was in expected.items():
        problem = changed(name, was, now.get(name))
        if problem is not None:
            return str(topic_changed(config.kafka.brokers, problem))
    return None


def _child(job_path: str, process_id: str) -> None:
    """One process of a local cluster. Its failure is one line on stderr, as in a single process;
    the parent exits with the worst of the codes."""
    job = pickle.loads(Path(job_path).read_bytes())
    try:
        code = _execute(job, int(process_id), job["addresses"])
    except KeyboardInterrupt:
        code = 130
    except (BrokerError, RunFailed) as exc:
        print(f"profilestream: {exc}", file=sys.stderr, flush=True)
        # without the interpreter's finalisation: after a failure librdkafka's and Bytewax's
        # native threads may still run, and tearing them down under it can abort the process
        # ("FATAL: exception not rethrown") after its one line was said
        sys.stdout.flush()
        os._exit(getattr(exc, "code", 1))
    sys.exit(code)


def describe(config: Any) -> str:
    """The dataflow's topology as text (`profilestream.commands.describe`, which prints it)."""
    from profilestream.commands.describe import describe as text

    return text(config)


if __name__ == "__main__":
    _child(*sys.argv[1:])
