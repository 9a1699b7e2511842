"""Apache Kafka itself, single node (KRaft, broker and controller in one JVM) on loopback.

Why beside Tansu: the embedded broker is what `demo` and machines without Java use, but the
product runs on Kafka, and the two differ where it matters (offsets, compaction, timestamps,
latency). Where a JDK (`java`) and Maven (`mvn`) are present, the tests run on both and the bench
can run on Kafka (`--broker kafka`).

How it is had, with nothing but Maven Central: `kafka/pom.xml` beside this module names
`org.apache.kafka:kafka_2.13` (`KAFKA_VERSION`); `mvn dependency:copy-dependencies` copies it
and its runtime jars once into a cache folder (`jars_dir()`: `$PROFILESTREAM_KAFKA_HOME`, else
`$XDG_CACHE_HOME/profilestream/kafka-<version>`, else `~/.cache/...`). Later starts use the
jars as they are; Maven is needed only for that first fetch. No distribution tarball.

Each start makes a fresh log directory in a private temporary folder (0700: the topics hold
personal data), a copy of one formatted once by `kafka.tools.StorageTool format` with fresh ids
(`prepare`, which also makes a class archive for the JVM), starts `kafka.Kafka` with `java -cp`,
and removes the folder after the broker stopped: like Tansu, nothing outlives the broker (the folder
of one whose owner was killed is removed by the next start). SIGTERM
is Kafka's controlled shutdown (about 2 s measured); SIGKILL after `stop_grace`.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import uuid
from importlib import resources
from pathlib import Path

from confluent_kafka import KafkaException

from profilestream.devtools.broker import BrokerProcess, BrokerStartError, free_port

KAFKA_VERSION = "4.1.1"
HEAP = "-Xmx1g"
JVM = ["-XX:+UseG1GC"]  # the JVM's full JIT: what the bench measures on
# The tests' broker does little but starts often: the client compiler alone and the serial
# collector start it with about half the CPU (the figures above `formatted_dir`).
QUICK_JVM = ["-XX:TieredStopAtLevel=1", "-XX:+UseSerialGC"]
# Broker settings that differ from Kafka's defaults, and why: one node, so every internal topic
# has one replica; no wait before the first consumer group rebalance (tests would pay it each
# time). Everything else (auto.create.topics.enable, timestamp checks, compaction) stays as a
# default Kafka has it, so that the tests meet what users' clusters do.
SETTINGS = {
    "num.partitions": "1",
    "offsets.topic.replication.factor": "1",
    "offsets.topic.num.partitions": "1",
    "transaction.state.log.replication.factor": "1",
    "transaction.state.log.min.isr": "1",
    "share.coordinator.state.topic.replication.factor": "1",
    "share.coordinator.state.topic.min.isr": "1",
    "group.initial.rebalance.delay.ms": "0",
}
_LOG4J = """\
rootLogger.level = WARN
rootLogger.appenderRef.out.ref = out
appender.out.type = Console
appender.out.name = out
appender.out.layout.type = PatternLayout
appender.out.layout.pattern = [%d] %p %m (%c)%n
logger.started.name = kafka.server.KafkaRaftServer
logger.started.level = INFO
"""


def java_and_maven() -> str | None:
    """None when Kafka can be had here; else what is missing (the reason a test tier skips)."""
    missing = [tool for tool in ("java", "mvn") if shutil.which(tool) is None]
    return f"{' and '.join(missing)} not on PATH (Apache Kafka needs a JDK and Maven)" if missing else None


def jars_dir(version: str = KAFKA_VERSION) -> Path:
    home = os.environ.get("PROFILESTREAM_KAFKA_HOME")
    if home:
        return Path(home)
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "profilestream" / f"kafka-{version}"


def fetched(version: str = KAFKA_VERSION) -> bool:
    return any(jars_dir(version).glob(f"kafka_2.13-{version}.jar"))


def fetch(version: str = KAFKA_VERSION, quiet: bool = True) -> Path:
    """The folder of Kafka's jars, fetched with Maven first if it is not there. Idempotent and
    safe to run twice at once: the jars are copied into a new folder that is renamed into place."""
    target = jars_dir(version)
    if fetched(version):
        return target
    why = java_and_maven()
    if why is not None:
        raise BrokerStartError(f"cannot fetch Apache Kafka {version}: {why}")
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".kafka-{version}-", dir=target.parent))
    pom = resources.files("profilestream.devtools").joinpath("kafka/pom.xml")
    with resources.as_file(pom) as pom_path:
        done = subprocess.run(
            [
                "mvn",
                "-B",
                *(["-q"] if quiet else []),
                "-f",
                str(pom_path),
                "dependency:copy-dependencies",
                "-DincludeScope=runtime",
                f"-Dkafka.version={version}",
                f"-DoutputDirectory={staging}",
            ],
            stdin=subprocess.DEVNULL,
            capture_output=quiet,
            text=True,
            check=False,
        )
    if done.returncode != 0 or not any(staging.glob(f"kafka_2.13-{version}.jar")):
        shutil.rmtree(staging, ignore_errors=True)
        said = ((done.stdout or "") + (done.stderr or "")).strip()[-2000:]
        raise BrokerStartError(
            f"mvn could not fetch org.apache.kafka:kafka_2.13:{version} (exit {done.returncode})\n{said}"
        )
    try:
        staging.rename(target)
    except OSError:  # fetched meanwhile by another process: keep theirs
        shutil.rmtree(staging, ignore_errors=True)
        if not fetched(version):
            raise
    return target


_PREFIX = "profilestream-kafka-"
_OWNER = "owner.pid"


def _sweep() -> None:
    """Remove the log directories of brokers whose owner died without `stop()` (SIGKILL): the
    kernel kills the broker with it (PDEATHSIG), but nothing is left to remove its data."""
    for data in Path(tempfile.gettempdir()).glob(f"{_PREFIX}*"):
        try:
            owner = int((data / _OWNER).read_text(encoding="ascii"))
            os.kill(owner, 0)
        except ProcessLookupError:
            shutil.rmtree(data, ignore_errors=True)
        except (OSError, ValueError):  # not ours to judge (another user's, being written)
            continue


def kafka_uuid() -> str:
    """A Kafka id (cluster id, directory id): 16 random bytes in URL-safe base64 without padding,
    as `kafka-storage random-uuid` prints (without a JVM start to ask for one); like Kafka's own
    `Uuid.randomUuid`, never one that starts with "-" (a command line would take it for an option)."""
    while True:
        text = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode("ascii")
        if not text.startswith("-"):
            return text


cluster_id = kafka_uuid


def _properties(host: str, port: int, controller_port: int, log_dir: Path) -> dict[str, str]:
    return {
        "process.roles": "broker,controller",
        "node.id": "1",
        "controller.quorum.voters": f"1@{host}:{controller_port}",
        "listeners": f"PLAINTEXT://{host}:{port},CONTROLLER://{host}:{controller_port}",
        "advertised.listeners": f"PLAINTEXT://{host}:{port}",
        "controller.listener.names": "CONTROLLER",
        "inter.broker.listener.name": "PLAINTEXT",
        "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
        "log.dirs": str(log_dir),
        **SETTINGS,
    }


def _write_properties(path: Path, properties: dict[str, str]) -> Path:
    path.write_text("".join(f"{k}={v}\n" for k, v in properties.items()), encoding="utf-8")
    return path


def _format(java: list[str], properties: Path) -> None:
    """`kafka-storage format` of the log directory that `properties` names: a JVM start (seconds)."""
    formatted = subprocess.run(
        [*java, "kafka.tools.StorageTool", "format", "-t", kafka_uuid(), "-c", str(properties)],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        check=False,
    )
    if formatted.returncode != 0:
        said = (formatted.stdout + formatted.stderr).strip()[-2000:]
        raise BrokerStartError(f"kafka-storage format failed (exit {formatted.returncode})\n{said}")


# What a start costs, and what the cache saves (CPU seconds of the JVM, measured on this 2-core
# machine): formatting a log directory 3 s (a JVM of its own), starting the broker 9 s with G1 and
# the full JIT, 5 s with the client compiler alone and the serial collector, 3.2 s with a class
# archive as well. So the formatted directory (`formatted_dir`: Kafka's own output, copied with
# fresh ids for each start) and the class archive (`class_archive`) are made once, beside the jars.
def formatted_dir(version: str = KAFKA_VERSION) -> Path:
    return jars_dir(version) / "formatted"


def class_archive(version: str = KAFKA_VERSION) -> Path:
    """The JVM's class-data archive of a broker's classes (AppCDS). Valid for one JDK and one
    class path only: named after the `java` binary, which a JVM checks (a stale one is ignored)."""
    java = Path(shutil.which("java") or "java").resolve()
    try:
        stamp = f"{java}:{java.stat().st_mtime_ns}"
    except OSError:
        stamp = str(java)
    return jars_dir(version) / f"classes-{hashlib.sha256(stamp.encode()).hexdigest()[:12]}.jsa"


def _renew_ids(meta: Path) -> None:
    """A copied log directory gets a cluster id and a directory id of its own (Kafka's
    meta.properties otherwise as `format` wrote it)."""
    fresh = {"cluster.id": kafka_uuid(), "directory.id": kafka_uuid()}
    lines = meta.read_text(encoding="utf-8").splitlines()
    renewed = [f"{k}={fresh[k]}" if (k := line.partition("=")[0]) in fresh else line for line in lines]
    meta.write_text("\n".join(renewed) + "\n", encoding="utf-8")


def _make_formatted(version: str, java: list[str]) -> None:
    target = formatted_dir(version)
    if (target / "meta.properties").exists():
        return
    staging = Path(tempfile.mkdtemp(prefix=".formatted-", dir=target.parent))
    try:
        properties = _properties("127.0.0.1", 9092, 9093, staging / "logs")
        _format(java, _write_properties(staging / "server.properties", properties))
        try:
            (staging / "logs").rename(target)
        except OSError:  # made meanwhile by another process: keep theirs
            if not (target / "meta.properties").exists():
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _make_class_archive(version: str) -> None:
    """One broker started with `-XX:ArchiveClassesAtExit`, used (a topic created, a record sent
    and read back) and stopped: the JVM writes the archive of every class it loaded as it exits."""
    target = class_archive(version)
    if target.exists():
        return
    staging = target.with_name(f".{target.name}.{os.getpid()}")
    broker = ApacheKafka(version=version, quick=True, stop_grace=120.0)
    broker.archive_to = staging
    try:
        with broker:
            _exercise(broker.bootstrap)
        if broker.returncode in (0, 143) and staging.exists() and staging.stat().st_size > 0:
            os.replace(staging, target)
    finally:
        staging.unlink(missing_ok=True)


def _exercise(bootstrap: str) -> None:
    from confluent_kafka import Consumer, Producer, TopicPartition
    from confluent_kafka.admin import AdminClient, NewTopic

    from profilestream.kafka.clients import create_missing

    create_missing(AdminClient({"bootstrap.servers": bootstrap}), [NewTopic("warm-up", 1, 1)], 60.0)
    producer = Producer({"bootstrap.servers": bootstrap})
    producer.produce("warm-up", b"v", b"k")
    producer.flush(60)
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "warm-up", "enable.auto.commit": False})
    consumer.assign([TopicPartition("warm-up", 0, 0)])
    try:
        consumer.poll(30)
    finally:
        consumer.close()


def prepare(version: str = KAFKA_VERSION) -> Path:
    """The jars (`fetch`), then what makes every later start cheaper: the formatted log directory
    and the class archive (about 15 s once). Idempotent; what `make kafka` and the first Kafka test
    of a session do. Where the jars' folder is read-only, starts go without them (slower)."""
    jars = fetch(version)
    with contextlib.suppress(OSError):  # a read-only cache: each start formats its own directory
        _make_formatted(version, _java(jars, None))
    try:
        _make_class_archive(version)
    except (OSError, RuntimeError, KafkaException) as exc:  # BrokerStartError, BrokerError: slower, not wrong
        print(f"profilestream: no class archive for Apache Kafka (starts will be slower): {exc}", file=sys.stderr)
    return jars


def _java(jars: Path, log4j: Path | None, quick: bool = False) -> list[str]:
    return [
        "java",
        HEAP,
        *(QUICK_JVM if quick else JVM),
        "-Djava.awt.headless=true",
        *([f"-Dlog4j2.configurationFile={log4j}"] if log4j is not None else []),
        "-cp",
        f"{jars}/*",
    ]


class ApacheKafka(BrokerProcess):
    """Apache Kafka `version` on `host:port` (a free port if none is given), with its controller
    on a second free port, as a context manager (the interface of `EmbeddedBroker`). `quick`:
    the JVM settings that start fastest (`QUICK_JVM`, for the tests); else the JVM's defaults for
    throughput (the bench)."""

    kind = "kafka"
    stop_signal = signal.SIGTERM  # controlled shutdown

    def __init__(
        self,
        port: int | None = None,
        host: str = "127.0.0.1",
        start_timeout: float = 90.0,
        stop_grace: float = 20.0,
        version: str = KAFKA_VERSION,
        quick: bool = False,
    ):
        super().__init__(port, host, start_timeout, stop_grace)
        self.version, self.quick = version, quick
        self.controller_port: int | None = None
        self.data_dir: Path | None = None
        self.archive_to: Path | None = None  # `_make_class_archive`

    def describe(self) -> str:
        return f"Apache Kafka {self.version}, KRaft, data in {self.data_dir} until it stops"

    def _prepare(self) -> None:
        if shutil.which("java") is None:
            raise BrokerStartError("java is not on PATH: Apache Kafka needs a JDK (17 or later)")
        assert self.port is not None
        self._jars = fetch(self.version)
        self.controller_port = free_port(self.host)
        _sweep()
        self.data_dir = Path(tempfile.mkdtemp(prefix=_PREFIX))  # 0700
        (self.data_dir / _OWNER).write_text(str(os.getpid()), encoding="ascii")
        (self.data_dir / "log4j2.properties").write_text(_LOG4J, encoding="utf-8")
        logs = self.data_dir / "logs"
        properties = _properties(self.host, self.port, self.controller_port, logs)
        self._properties = _write_properties(self.data_dir / "server.properties", properties)
        template = formatted_dir(self.version)
        if (template / "meta.properties").exists():
            shutil.copytree(template, logs)
            _renew_ids(logs / "meta.properties")
        else:
            _format(self._jvm(), self._properties)

    def _jvm(self) -> list[str]:
        assert self.data_dir is not None
        java = _java(self._jars, self.data_dir / "log4j2.properties", self.quick)
        archive = class_archive(self.version)
        if self.archive_to is not None:
            java.insert(1, f"-XX:ArchiveClassesAtExit={self.archive_to}")
        elif archive.exists():
            java.insert(1, f"-XX:SharedArchiveFile={archive}")
        return java

    def _command(self) -> list[str]:
        return [*self._jvm(), "kafka.Kafka", str(self._properties)]

    def _cleanup(self) -> None:
        data, self.data_dir = self.data_dir, None
        if data is not None:
            shutil.rmtree(data, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    """`python -m profilestream.devtools.apache_kafka`: fetch the jars if Java and Maven are here
    (what `make test` does first); says so and succeeds without them (the Kafka tier then skips)."""
    why = java_and_maven()
    if why is not None and not fetched():
        print(f"Apache Kafka not fetched: {why}; the Kafka tests will be skipped", file=sys.stderr)
        return 0
    try:
        fetch(quiet=False)
        print(f"Apache Kafka {KAFKA_VERSION}: {prepare()}")
    except BrokerStartError as exc:
        print(f"profilestream: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())


__all__ = [
    "KAFKA_VERSION",
    "ApacheKafka",
    "class_archive",
    "cluster_id",
    "fetch",
    "fetched",
    "formatted_dir",
    "jars_dir",
    "java_and_maven",
    "kafka_uuid",
    "prepare",
]
