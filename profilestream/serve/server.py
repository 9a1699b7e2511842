"""Putting `serve` together: the store, the follower, the producer, and uvicorn in front.

Why uvicorn is driven from here and not by its command line: the app holds live resources (the
RocksDB store, a Kafka producer and consumer) that must be opened once, in this process, after
the configuration was checked, and closed in order on shutdown: the server stops taking
requests, then the producer flushes (so every 202 reaches the topic), then the follower stops
and the store closes. uvicorn's lifespan runs that order (`app.create_app`).
"""

from __future__ import annotations

import re
import signal
import socket
from typing import Any

from profilestream.config import Config, ConfigError
from profilestream.ops.metrics import log, setup_logging

_COOKIE_NAME = re.compile(r"[A-Za-z0-9!#$%&'*+.^_`|~-]+")  # an RFC 6265 token


def check(config: Config) -> None:
    """What the `[serve]` keys must be beyond their type; a ConfigError names the key."""
    s = config.serve
    if not 1 <= s.port <= 65535:
        raise ConfigError("serve.port", f"must be from 1 to 65535, got {s.port}")
    if not _COOKIE_NAME.fullmatch(s.cookie_name):
        raise ConfigError("serve.cookie_name", f"{s.cookie_name!r} is not a cookie name (letters, digits, -_.!)")
    if s.cookie_max_age < 1000:
        raise ConfigError("serve.cookie_max_age", "must be at least 1s")
    if not s.host.strip():
        raise ConfigError("serve.host", "must name an address to listen on (e.g. 127.0.0.1 or 0.0.0.0)")


def _port_free(host: str, port: int) -> None:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise ConfigError("serve.port", f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None


def build(config: Config) -> Any:
    """The app with its parts open (the store, the producer); `serve.close` runs at shutdown."""
    from profilestream.codec import registry
    from profilestream.domain.roles import CLICKSTREAM
    from profilestream.serve.app import Parts, create_app
    from profilestream.serve.collector import Collector
    from profilestream.serve.follow import Follower
    from profilestream.serve.producer import EventProducer
    from profilestream.store import exclusive

    rules = config.rules()
    wire = registry.wire_for(config)
    if wire is not None:  # before anything is opened: a registry that does not answer is exit 2
        wire.register((CLICKSTREAM,))
    store = exclusive(config)  # a store another process holds: a StoreError naming store.path
    producer = EventProducer(config)
    parts = Parts(
        collector=Collector(rules, config.serve.url_key_param),
        producer=producer,
        follower=Follower(config, store),
        settings=config.serve,
        close=store.close,
    )
    return create_app(parts)


def serve(config: Config) -> None:
    import uvicorn

    check(config)
    s = config.serve
    _port_free(s.host, s.port)
    setup_logging()
    app = build(config)
    log("serve_listening", url=f"http://{s.host}:{s.port}/")
    server = uvicorn.Server(
        uvicorn.Config(
            app,
            host=s.host,
            port=s.port,
            loop="uvloop",
            http="httptools",
            lifespan="on",
            access_log=False,  # a request line may carry an e-mail address (pixel, ?email=)
            log_level="warning",
            proxy_headers=True,  # X-Forwarded-Proto from the proxies uvicorn trusts: Secure cookies
            server_header=False,
        )
    )
    # uvicorn stops gracefully on SIGTERM and SIGINT, then raises the signal again against the
    # handler that was there before: for SIGTERM (a service manager's stop) that is this one, so
    # a clean stop exits 0; SIGINT raises KeyboardInterrupt (exit 130), as `run` does
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: None)
    try:
        server.run()
    finally:
        signal.signal(signal.SIGTERM, previous)
    producer = app.state.producer
    log("serve_stopped", delivered=producer.delivered, failed=producer.failed)


__all__ = ["build", "check", "serve"]
