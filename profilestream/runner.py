"""Running the profile dataflow: one process or several, bounded or always-on.

`run` checks the brokers answer before anything starts (a clear error beats a silent hang), reads
the input topics' partition counts, and hands the dataflow to Bytewax. With `processes > 1` it
starts that many copies of itself as a Bytewax cluster on loopback and waits for all of them.
"""

from __future__ import annotations

import pickle
import signal
import socket
import subprocess
import sys
import tempfile
from datetime import timedelta
from pathlib import Path

from bytewax.recovery import RecoveryConfig, init_db_dir
from bytewax.run import cli_main
from confluent_kafka.admin import AdminClient

from flows.profiles import INPUT_ROLES, build_flow
from profilestream.io.kafka import BrokerError, create_topics, end_offsets


class BrokerUnreachable(BrokerError):
    pass


def input_layout(config, bounded: bool) -> tuple[dict[str, int], dict | None]:
    """Partition counts of the input topics (creating missing topics first) and, for a bounded
    run, the exact offsets each input partition starts and ends at."""
    timeout = config.run.connect_timeout / 1000
    admin = AdminClient(config.kafka.client_config())
    try:
        metadata = admin.list_topics(timeout=timeout)
    except Exception as exc:  # KafkaException: transport failure / timeout
        raise BrokerUnreachable(
            f"no Kafka broker answered at {config.kafka.brokers} within {timeout:.0f}s "
            f"(kafka.brokers, run.connect_timeout; start one with `profilestream broker`): {exc}"
        ) from exc
    names = {role: config.topics.name(role) for role in INPUT_ROLES}
    if any(name not in metadata.topics for name in config.topics.names().values()):
        create_topics(config)
        metadata = admin.list_topics(timeout=timeout)
    partitions = {role: len(metadata.topics[name].partitions) for role, name in names.items()}
    spans = {role: end_offsets(config, name) for role, name in names.items()} if bounded else None
    return partitions, spans


def _recovery(recovery_dir: str | None) -> RecoveryConfig | None:
    if recovery_dir is None:
        return None
    path = Path(recovery_dir)
    if not path.exists() or not any(path.iterdir()):
        path.mkdir(parents=True, exist_ok=True)
        init_db_dir(path, 1)
    return RecoveryConfig(path, backup_interval=timedelta(0))


def run(config, workers: int = 1, processes: int = 1, until_idle: bool = False,
        recovery_dir: str | None = None) -> int:
    """Run the dataflow; `until_idle` makes it bounded (end of input = end of time)."""
    partitions, spans = input_layout(config, until_idle)
    snapshot_every = timedelta(milliseconds=config.run.snapshot_interval)
    job = {"config": config, "workers": workers, "recovery_dir": recovery_dir,
           "partitions": partitions, "spans": spans, "snapshot_every": snapshot_every}
    if processes > 1:
        return _run_cluster(job, processes)
    _execute(job, None, None)
    return 0


def _execute(job: dict, process_id: int | None, addresses: list[str] | None) -> None:
    flow = build_flow(job["config"], job["partitions"], job["spans"])
    cli_main(flow, workers_per_process=job["workers"], process_id=process_id, addresses=addresses,
             epoch_interval=job["snapshot_every"], recovery_config=_recovery(job["recovery_dir"]))


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
        path.write_bytes(pickle.dumps({**job, "addresses": addresses}))
        children = [subprocess.Popen([sys.executable, "-m", "profilestream.runner", str(path), str(i)])
                    for i in range(processes)]
        try:
            codes = [child.wait() for child in children]
        except KeyboardInterrupt:
            for child in children:
                child.send_signal(signal.SIGINT)
            codes = [child.wait() for child in children]
    return max(codes, key=abs)


def _child(job_path: str, process_id: str) -> None:
    job = pickle.loads(Path(job_path).read_bytes())
    _execute(job, int(process_id), job["addresses"])


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
