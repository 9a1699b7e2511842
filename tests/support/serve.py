"""`profilestream serve` without a broker: the real app, collector, store and follower, with a
producer that keeps what it is handed (for the unit and generated API tests of serve)."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from starlette.testclient import TestClient

from profilestream.config import Config
from profilestream.devtools.httpbench import ServeProcess as ServeProcess  # re-exported: the tests run serve with it
from profilestream.serve.app import Parts, create_app
from profilestream.serve.collector import Collector
from profilestream.serve.follow import Follower
from profilestream.store import ProfileStore


class ListProducer:
    """Keeps the `(device_id, record)` pairs handed over, as the real one hands them to Kafka."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, dict[str, Any]]] = []
        self.delivered = self.failed = 0
        self.closed = False

    def send(self, records: list[tuple[str, dict[str, Any]]]) -> None:
        self.sent.extend(records)

    def close(self) -> int:
        self.closed = True
        return 0


class StillFollower(Follower):
    """The real follower's answers, over a store the test fills itself: no thread, no broker."""

    def start(self) -> StillFollower:
        return self

    def stop(self, timeout: float = 0) -> None:
        pass


def profile(profile_id: str, **fields: Any) -> dict[str, Any]:
    """A `profiles` record in its JSON form, with the counters a fresh profile has."""
    base: dict[str, Any] = {
        "profile_id": profile_id,
        "customer_id": None,
        "customer_key": None,
        "device_ids": [],
        "first_seen": "2026-11-20T10:00:00.000Z",
        "last_seen": "2026-11-20T10:05:00.000Z",
        "visits": 1,
        "page_views": 1,
        "product_views": 0,
        "orders": 0,
        "revenue": 0.0,
        "last_order_ts": None,
        "viewed_products": [],
        "cart": [],
        "campaigns": [],
        "attributes": {},
        "lead_status": None,
        "marketing_consent": None,
        "updated_at": "2026-11-20T10:05:00.000Z",
    }
    base.update(fields)
    return base


@contextmanager
def edge(tmp_path: Path, profiles: list[dict[str, Any]] = (), **serve: Any) -> Iterator[Any]:
    """A TestClient on the app (settings `serve` override `[serve]`), the store holding
    `profiles`; yields a namespace with `client`, `producer`, `follower`."""
    config = Config()
    settings = dataclasses.replace(config.serve, **serve)
    store = ProfileStore(tmp_path / "store")
    for offset, p in enumerate(profiles):
        store.apply(p["profile_id"], p, 0, offset)
    producer = ListProducer()
    follower = StillFollower(config, store)
    follower.caught_up.set()
    follower.broker_ok = True
    collector = Collector(config.rules(), settings.url_key_param)
    app = create_app(Parts(collector, producer, follower, settings, store.close))
    with TestClient(app) as client:
        yield _Edge(client, producer, follower, store)


@dataclasses.dataclass
class _Edge:
    client: TestClient
    producer: ListProducer
    follower: StillFollower
    store: ProfileStore


def eventually(get: Callable[[], Any], done: Callable[[Any], bool], limit: float = 60) -> Any:
    """`get()` again every 0.3 s until `done` holds for its value or `limit` seconds passed; the
    last value either way (the caller's assertion then says what was wrong)."""
    deadline = time.monotonic() + limit
    while True:
        value = get()
        if done(value) or time.monotonic() > deadline:
            return value
        time.sleep(0.3)
