"""Running the profile dataflow: one process or several, bounded or always-on.

`run` checks the brokers answer before anything starts (a clear error beats a silent hang), reads
the input topics' partition counts, and hands the dataflow to Bytewax. With `processes > 1` it
starts that many copies of itself as a Bytewax cluster on loopback and waits for all of them.
"""

from __future__ import annotations

import logging
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

log = logging.getLogger("profilestream.run")


class BrokerUnreachable(RuntimeError):
    pass


def input_partitions(config, timeout: float = 30.0) -> dict[str, int]:
    """Partition counts of the input topics, creating missing topics first."""
    from profilestream.io.kafka import create_topics

    admin = AdminClient(config.kafka.client_config())
    try:
        metadata = admin.list_topics(timeout=timeout)
    except Exception as exc:  # KafkaException: transport failure / timeout
        raise BrokerUnreachable(
            f"no Kafka broker answered at {config.kafka.brokers} within {timeout:.0f}s "
            f"(kafka.brokers, run.connect_timeout; start one with `profilestream broker`): {exc}"
        ) from exc
    names = {role: config.topics.name(role) for role in INPUT_ROLES}
    if any(name not in metadata.topics for name in names.values()):
        create_topics(config)
        metadata = admin.list_topics(timeout=timeout)
    return {role: len(metadata.topics[name].partitions) for role, name in names.items()}


def _recovery(recovery_dir: str | None, snapshot_every: timedelta) -> RecoveryConfig | None:
    if recovery_dir is None:
        return None
    path = Path(recovery_dir)
    if not path.exists() or not any(path.iterdir()):
        path.mkdir(parents=True, exist_ok=True)
        init_db_dir(path, 1)
    return RecoveryConfig(path, backup_interval=timedelta(0))


def run(config, workers: int = 1, processes: int = 1, until_idle: bool = False,
        recovery_dir: str | None = None) -> int:
    partitions = input_partitions(config, config.run.connect_timeout / 1000)
    snapshot_every = timedelta(milliseconds=config.run.snapshot_interval)
    if processes > 1:
        return _run_cluster(config, workers, processes, until_idle, recovery_dir, partitions, snapshot_every)
    flow = build_flow(config, bounded=until_idle, partitions=partitions)
    cli_main(flow, workers_per_process=workers, epoch_interval=snapshot_every,
             recovery_config=_recovery(recovery_dir, snapshot_every))
    return 0


def _free_ports(n: int) -> list[int]:
    sockets = [socket.socket() for _ in range(n)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def _run_cluster(config, workers, processes, until_idle, recovery_dir, partitions, snapshot_every) -> int:
    """Start `processes` copies of this module as one Bytewax cluster on loopback. The parent has
    already resolved the configuration (file and environment); the children get it pickled, so
    every process runs with exactly the same settings."""
    addresses = ";".join(f"127.0.0.1:{port}" for port in _free_ports(processes))
    with tempfile.TemporaryDirectory(prefix="profilestream-") as tmp:
        job = Path(tmp) / "job.pickle"
        job.write_bytes(pickle.dumps({
            "config": config, "addresses": addresses.split(";"), "workers": workers,
            "bounded": until_idle, "recovery_dir": recovery_dir, "partitions": partitions,
            "snapshot_every": snapshot_every,
        }))
        children = [subprocess.Popen([sys.executable, "-m", "profilestream.runner", str(job), str(i)])
                    for i in range(processes)]
        try:
            codes = [child.wait() for child in children]
        except KeyboardInterrupt:
            for child in children:
                child.send_signal(signal.SIGINT)
            codes = [child.wait() for child in children]
    return max(codes, key=abs)


def _child(job_path: str, proc_id: str) -> None:
    job = pickle.loads(Path(job_path).read_bytes())
    flow = build_flow(job["config"], bounded=job["bounded"], partitions=job["partitions"])
    cli_main(flow, workers_per_process=job["workers"], process_id=int(proc_id),
             addresses=job["addresses"], epoch_interval=job["snapshot_every"],
             recovery_config=_recovery(job["recovery_dir"], job["snapshot_every"]))


def describe(config) -> str:
    """The dataflow's steps and topics, Kafka Streams style, read off the built flow itself."""
    partitions = {role: config.topics.partitions for role in INPUT_ROLES}
    flow = build_flow(config, bounded=True, partitions=partitions)
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
