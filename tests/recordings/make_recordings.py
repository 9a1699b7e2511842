"""Make the scenario recordings in this directory: `python tests/recordings/make_recordings.py [NAME...]`.

Each scenario below is a small hand-written set of input events. For each, this starts an embedded
broker, creates the default topics (3 partitions), produces the events keyed as `produce` does
(with their event time as the Kafka timestamp),
and runs `profilestream record` on the two input topics into `tests/recordings/<name>/` (replacing
what was there). The files come out the same for the same events (fixed Avro sync markers), so
regenerating without changing a scenario leaves git clean.

`tests/integration/test_record_replay.py` replays each recording into the real broker, runs
`run --until-idle` and asserts the scenario's outcome as facts (its docstring here says which).
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

HERE = Path(__file__).resolve().parent
START = datetime(2026, 11, 20, tzinfo=UTC)


def ts(minute: float, day: int = 0) -> str:
    """`minute` minutes into day `day` after 2026-11-20 (UTC), as the contract's JSON time."""
    moment = START + timedelta(days=day, minutes=minute)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def click(n: int, minute: float, device: str, type: str = "page_view", day: int = 0, **fields) -> dict:
    return {"event_id": f"e{n:03d}", "ts": ts(minute, day), "device_id": device, "type": type, **fields}


def change(n: int, minute: float, customer: str, day: int = 0, op: str = "upsert", **fields) -> dict:
    return {"change_id": f"c{n:03d}", "ts": ts(minute, day), "customer_id": customer, "op": op, **fields}


def login_merge() -> tuple[list[dict], list[dict]]:
    """Two anonymous devices of one person log in with key K1, the CRM then ties K1 to C1: d1 and
    d2 end in one profile with customer C1 and key K1, their anonymous activity included; merges
    are by login and crm_link; the stranger d3 stays a separate anonymous profile."""
    clicks = [
        click(1, 600, "d1", "page_view", url="https://m.shop.example/"),
        click(2, 601, "d1", "product_view", product_id="sku-1", page_category="shoes", price=59.9),
        click(3, 602, "d3", "page_view", url="https://www.shop.example/"),
        click(4, 605, "d2", "page_view", campaign={"source": "google", "medium": "cpc", "name": "brand"}),
        click(5, 606, "d2", "product_view", product_id="sku-2", page_category="bags", price=120.0),
        click(6, 610, "d1", "login", customer_key="K1"),
        click(7, 615, "d2", "login", customer_key="K1"),
        click(8, 616, "d2", "page_view"),
    ]
    changes = [
        change(
            1, 620, "C1", customer_key="K1", lead_status="lead", marketing_consent=True, attributes={"segment": "gold"}
        )
    ]
    return clicks, changes


def order_match_crm_first() -> tuple[list[dict], list[dict]]:
    """The CRM imports order O-77 for C2 (no web account) 20 minutes before the web purchase of
    O-77 arrives from the anonymous device d5: d5 ends in C2's profile (one order, revenue 49.9,
    one order_match merge). d6 buys O-88, which the CRM never names: it stays anonymous. d7 buys
    O-99 31 days after the CRM named it for C2, beyond the 30-day window: no link."""
    changes = [
        change(1, 590, "C2", order_id="O-99"),
        change(2, 600, "C2", lead_status="sale", order_id="O-77"),
    ]
    clicks = [
        click(1, 610, "d5", "page_view"),
        click(2, 612, "d5", "add_to_cart", product_id="sku-5", price=49.9),
        click(3, 620, "d5", "purchase", order_id="O-77", revenue=49.9),
        click(4, 630, "d6", "purchase", order_id="O-88", revenue=10.0),
        click(5, 591, "d7", "purchase", day=31, order_id="O-99", revenue=5.0),
    ]
    return clicks, changes


def cart_abandon_cross_device() -> tuple[list[dict], list[dict]]:
    """C3 fills the cart on the phone p3 and buys it on the laptop l3 within the hour: no
    abandonment. The next day C3 adds sku-2 on p3 and leaves: exactly one cart_abandoned, for C3,
    at the add plus 60 minutes, device p3, cart [sku-2]. The anonymous d8 adds and removes its
    only product (empty cart: none); C4 (no marketing consent) leaves a full cart: none."""
    changes = [
        change(1, 0, "C3", customer_key="K3", marketing_consent=True),
        change(2, 0, "C4", customer_key="K4", marketing_consent=False),
    ]
    clicks = [
        click(1, 600, "p3", "login", customer_key="K3"),
        click(2, 602, "p3", "add_to_cart", product_id="sku-1", price=19.9, quantity=2),
        click(3, 620, "l3", "login", customer_key="K3"),
        click(4, 640, "l3", "purchase", order_id="O-3", revenue=39.8),
        click(5, 700, "d8", "add_to_cart", product_id="sku-8", price=5.0),
        click(6, 705, "d8", "remove_from_cart", product_id="sku-8"),
        click(7, 710, "p4", "login", customer_key="K4"),
        click(8, 711, "p4", "add_to_cart", product_id="sku-4", price=7.5),
        click(9, 600, "p3", "add_to_cart", day=1, product_id="sku-2", price=99.0),
    ]
    return clicks, changes


SCENARIOS = {f.__name__: f for f in (login_merge, order_match_crm_first, cart_abandon_cross_device)}


def make(name: str, bootstrap: str, out: Path) -> None:
    """Produce scenario `name` into fresh default-named topics on `bootstrap` and record them to `out`."""
    from confluent_kafka import Producer

    from profilestream.codec import avro
    from profilestream.config import load_config
    from profilestream.kafka.clients import create_topics, key_of
    from profilestream.kafka.recording import record

    clicks, changes = SCENARIOS[name]()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "profilestream.toml"
        path.write_text(f'[kafka]\nbrokers = "{bootstrap}"\n\n[topics]\npartitions = 3\n', encoding="utf-8")
        config = load_config(str(path), env={})
        create_topics(config)
        # keyed as `produce` does (librdkafka's CRC32 partitioner), stamped with the event time
        # rather than the clock, so that the recording is the same every time
        producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True})
        for role, records in (("crm_changes", changes), ("clickstream", clicks)):
            for r in records:
                r = avro.from_json(role, r, config.rules())
                producer.produce(
                    config.topics.name(role), avro.encode(role, r), key_of(role, r).encode(), timestamp=r["ts"]
                )
        assert producer.flush(30) == 0, "scenario records not delivered"
        if out.exists():
            shutil.rmtree(out)
        record(config, ["clickstream", "crm_changes"], out)


def main(names: list[str]) -> int:
    sys.path.insert(0, str(HERE.parent.parent))
    from profilestream.devtools.broker import EmbeddedBroker

    for name in names or list(SCENARIOS):
        with EmbeddedBroker() as broker:  # one broker a scenario: the default topic names are free
            make(name, broker.bootstrap, HERE / name)
        print(f"{name}: recorded to {HERE / name}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
