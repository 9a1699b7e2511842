"""The sample shop generator (profilestream/devtools/sample.py): deterministic, in time order, valid per
CONTRACT.md, realistic proportions, and every feature the dataflow must handle shows up."""

from __future__ import annotations

import hashlib
import itertools
import json
import re
import time
from collections import Counter, defaultdict
from datetime import datetime

import pytest

from profilestream.devtools.sample import (
    BAD_KINDS,
    CLICKSTREAM,
    CRM_CHANGES,
    DAY,
    HOUR,
    ShopSpec,
    bad_records,
    generate,
    population,
    records,
    write_jsonl,
)

TS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
HEX64 = re.compile(r"^[0-9a-f]{64}$")
BLOCKED = {"", "0", "-", "null", "none", "undefined", "anonymous", "unknown", "test"}
CLICK_TYPES = {
    "page_view",
    "product_view",
    "add_to_cart",
    "remove_from_cart",
    "checkout",
    "purchase",
    "login",
    "logout",
}
CLICK_FIELDS = {
    "event_id": str,
    "ts": str,
    "device_id": str,
    "type": str,
    "customer_key": str,
    "email": str,
    "url": str,
    "referrer": str,
    "page_category": str,
    "product_id": str,
    "price": float,
    "quantity": int,
    "order_id": str,
    "revenue": float,
    "campaign": dict,
}
CRM_FIELDS = {
    "change_id": str,
    "ts": str,
    "customer_id": str,
    "op": str,
    "customer_key": str,
    "email": str,
    "attributes": dict,
    "lead_status": str,
    "marketing_consent": bool,
    "order_id": str,
}
REQUIRED = {CLICKSTREAM: ("event_id", "ts", "device_id", "type"), CRM_CHANGES: ("change_id", "ts", "customer_id", "op")}


def ms(ts: str) -> int:
    return int(datetime.fromisoformat(ts.replace("Z", "+00:00")).timestamp() * 1000)


def sha(email: str) -> str:
    return hashlib.sha256(email.strip().lower().encode()).hexdigest()


def key_of(rec: dict) -> str | None:
    """The customer key a record carries, e-mail hashed; None when absent or blocked."""
    key = sha(rec["email"]) if "email" in rec else rec.get("customer_key")
    if key is None or key.strip().lower() in BLOCKED:
        return None
    return key


@pytest.fixture(scope="module")
def shop() -> list[tuple[str, dict]]:
    return list(generate(ShopSpec(events=5000)))


@pytest.fixture(scope="module")
def big() -> list[tuple[str, dict]]:
    return list(generate(ShopSpec(events=100_000, seed=11)))


def check_record(role: str, rec: dict) -> None:
    fields = CLICK_FIELDS if role == CLICKSTREAM else CRM_FIELDS
    for name in REQUIRED[role]:
        assert name in rec, (name, rec)
    for name, value in rec.items():
        assert name in fields, (name, rec)
        assert value is not None, (name, rec)  # optional fields are omitted, never null
        assert type(value) is fields[name], (name, rec)
    assert TS.match(rec["ts"]), rec
    assert "customer_key" not in rec or "email" not in rec, rec
    if "customer_key" in rec and rec["customer_key"].strip().lower() not in BLOCKED:
        assert HEX64.match(rec["customer_key"]), rec
    if role == CLICKSTREAM:
        assert rec["event_id"].startswith("e-") and rec["device_id"].startswith("d-"), rec
        assert rec["device_id"].strip().lower() not in BLOCKED
        assert rec["type"] in CLICK_TYPES, rec
        if rec["type"] in ("product_view", "add_to_cart", "remove_from_cart"):
            assert rec.get("product_id"), rec
        if rec["type"] == "purchase":
            assert rec.get("order_id") and isinstance(rec.get("revenue"), float), rec
        if "quantity" in rec:
            assert rec["quantity"] >= 1
        if "campaign" in rec:
            assert set(rec["campaign"]) <= {"source", "medium", "name"}
            assert all(isinstance(v, str) for v in rec["campaign"].values())
    else:
        assert rec["change_id"].startswith("c-") and re.match(r"^C\d{6,}$", rec["customer_id"]), rec
        assert rec["op"] in ("upsert", "erase"), rec
        if rec["op"] == "erase":
            assert set(rec) == {"change_id", "ts", "customer_id", "op"}, rec
        for k, v in rec.get("attributes", {}).items():
            assert isinstance(k, str) and type(v) in (str, float), rec
        if "lead_status" in rec:
            assert rec["lead_status"] in ("lead", "offer_created", "sale")


# --- determinism, order, validity ---------------------------------------------------------------


def test_same_spec_same_output_and_exact_count(shop):
    assert len(shop) == 5000
    assert list(generate(ShopSpec(events=5000))) == shop
    other = list(generate(ShopSpec(events=5000, seed=8)))
    assert len(other) == 5000 and other != shop
    assert list(generate(ShopSpec(events=0))) == []
    assert len(list(generate(ShopSpec(events=1)))) == 1


def test_a_prefix_is_the_start_of_a_longer_run_with_the_same_population():
    spec = ShopSpec(events=3000, customers=40, days=20)
    longer = list(generate(ShopSpec(events=4000, customers=40, days=20)))
    assert list(generate(spec)) == longer[:3000]


def test_time_order_is_the_contract_order(shop, big):
    for run in (shop, big):
        assert ms(run[0][1]["ts"]) >= ShopSpec().start_ms
        keys = [
            (ms(rec["ts"]), 0 if role == CRM_CHANGES else 1, rec.get("change_id") or rec["event_id"])
            for role, rec in run
        ]
        assert all(a <= b for a, b in itertools.pairwise(keys))


def test_every_record_is_valid_per_contract(shop, big):
    for role, rec in shop + big:
        check_record(role, rec)


def test_every_record_passes_the_codec_and_validation(shop):
    avro = pytest.importorskip("profilestream.codec.avro")
    validation = pytest.importorskip("profilestream.codec.validation")
    rules = pytest.importorskip("profilestream.domain.rules").Rules()
    for role, rec in shop:
        record = avro.from_json(role, json.loads(json.dumps(rec)))
        assert "email" not in record
        validation.to_event(role, record, rules)


def test_ids_are_unique_except_duplicates(shop):
    seen: dict[str, dict] = {}
    for _, rec in shop:
        rid = rec.get("event_id") or rec["change_id"]
        if rid in seen:
            first = seen[rid]
            assert {k: v for k, v in rec.items() if k != "ts"} == {k: v for k, v in first.items() if k != "ts"}
            assert 0 <= ms(rec["ts"]) - ms(first["ts"]) <= 20_000
        seen[rid] = rec
    orders: dict[str, set] = defaultdict(set)
    for role, rec in shop:
        if role == CLICKSTREAM and rec["type"] == "purchase":
            orders[rec["order_id"]].add(rec["event_id"])
    assert orders and all(len(ids) == 1 for ids in orders.values())  # an order repeats only as a duplicate


def test_records_helper_and_emails_switch():
    spec = ShopSpec(events=3000)
    both = list(generate(spec))
    assert list(records(spec, CRM_CHANGES)) == [rec for role, rec in both if role == CRM_CHANGES]
    plain = list(generate(ShopSpec(events=3000, emails=False)))
    assert not any("email" in rec for _, rec in plain)
    # the same shop, with every clear e-mail replaced by its hash
    hashed = [
        (role, {("customer_key" if k == "email" else k): (sha(v) if k == "email" else v) for k, v in rec.items()})
        for role, rec in both
    ]
    assert hashed == plain


# --- realism ------------------------------------------------------------------------------------


def test_proportions(big):
    roles = Counter(role for role, _ in big)
    assert 0.02 <= roles[CRM_CHANGES] / len(big) <= 0.04
    types = Counter(rec["type"] for role, rec in big if role == CLICKSTREAM)
    clicks = roles[CLICKSTREAM]
    assert types["product_view"] > types["page_view"] > types["add_to_cart"] > types["purchase"] > 0
    assert types["checkout"] >= types["purchase"] * 0.95
    assert 0.005 <= types["login"] / clicks <= 0.05
    assert types["remove_from_cart"] < types["add_to_cart"]
    keyed = [rec for _, rec in big if "customer_key" in rec or "email" in rec]
    emails = sum("email" in rec for rec in keyed)
    assert 0.01 <= emails / len(keyed) <= 0.12
    ids = Counter(rec.get("event_id") or rec["change_id"] for _, rec in big)
    assert 0.0005 <= sum(n - 1 for n in ids.values()) / len(big) <= 0.006
    devices = {rec["device_id"] for role, rec in big if role == CLICKSTREAM}
    customers = {rec["customer_id"] for role, rec in big if role == CRM_CHANGES}
    assert len(devices) > 3 * len(customers)  # mostly anonymous traffic
    upserts = {}
    for role, rec in big:
        if role == CRM_CHANGES and "attributes" in rec and "lead_status" in rec:
            upserts.setdefault(rec["customer_id"], rec)
    consent = Counter(rec.get("marketing_consent") for rec in upserts.values())
    assert consent[True] > consent[False] > 0
    assert Counter(rec["lead_status"] for rec in upserts.values()).keys() == {"lead", "offer_created", "sale"}
    span = (ms(big[-1][1]["ts"]) - ms(big[0][1]["ts"])) / DAY
    spec = ShopSpec(events=100_000, seed=11)
    assert 0.75 * spec.period_days <= span <= 1.3 * spec.period_days


def test_every_feature_appears_in_a_5000_event_shop(shop):
    found = features(ShopSpec(events=5000), shop)
    print(dict(found))
    missing = [w for w in WANTED if not found[w]]
    assert not missing, missing


WANTED = [
    "newsletter link with key",
    "paid or social campaign",
    "login",
    "checkout with account",
    "click with email",
    "blocked key",
    "logout",
    "erase",
    "crm upsert with email",
    "consent false",
    "attribute update",
    "duplicate click",
    "crm first order",
    "web first order",
    "order tied only by order_id",
    "return after 7+ days",
    "shared device",
    "cart never bought on this device",
    "customer on 2+ devices",
    "key on the site before the CRM",
]


def features(spec: ShopSpec, shop: list[tuple[str, dict]]) -> Counter:
    """How often each feature of the workload occurs in `shop` (generated from `spec`)."""
    owners: dict[str, list] = defaultdict(list)
    for c in population(spec):
        for d in c.devices:
            owners[d].append(c)
    clicks = [rec for role, rec in shop if role == CLICKSTREAM]
    crm = [rec for role, rec in shop if role == CRM_CHANGES]
    found: dict[str, int] = Counter()

    for rec in clicks:
        camp = rec.get("campaign", {})
        if rec["type"] == "page_view" and camp.get("source") == "newsletter" and key_of(rec):
            found["newsletter link with key"] += 1
        if camp.get("source") in ("google", "facebook", "instagram", "partner"):
            found["paid or social campaign"] += 1
        if rec["type"] == "login" and key_of(rec):
            found["login"] += 1
        if rec["type"] == "checkout" and key_of(rec):
            found["checkout with account"] += 1
        if "email" in rec:
            found["click with email"] += 1
        if "customer_key" in rec and key_of(rec) is None:
            found["blocked key"] += 1
        if rec["type"] == "logout":
            found["logout"] += 1
    for rec in crm:
        if rec["op"] == "erase":
            found["erase"] += 1
        if "email" in rec:
            found["crm upsert with email"] += 1
        if "marketing_consent" in rec and rec["marketing_consent"] is False:
            found["consent false"] += 1
        if "attributes" in rec and "lead_status" not in rec:
            found["attribute update"] += 1

    ids = Counter(rec["event_id"] for rec in clicks)
    found["duplicate click"] = sum(n > 1 for n in ids.values())

    purchases = {rec["order_id"]: rec for rec in clicks if rec["type"] == "purchase"}
    for rec in crm:
        web = purchases.get(rec.get("order_id"))
        if web is not None:
            found["crm first order" if ms(rec["ts"]) < ms(web["ts"]) else "web first order"] += 1
            gap = abs(ms(rec["ts"]) - ms(web["ts"]))
            assert gap <= DAY + HOUR
            if not any(
                key_of(c) for c in clicks if c["device_id"] == web["device_id"] and ms(c["ts"]) <= ms(web["ts"])
            ):
                found["order tied only by order_id"] += 1

    by_device: dict[str, list] = defaultdict(list)
    for rec in clicks:
        by_device[rec["device_id"]].append(rec)
    for dev, recs in by_device.items():
        times = [ms(r["ts"]) for r in recs]
        if any(b - a >= 7 * DAY for a, b in itertools.pairwise(times)):
            found["return after 7+ days"] += 1
        keys = {key_of(r) for r in recs if r["type"] == "login"} - {None}
        if len(keys) >= 2:
            found["shared device"] += 1
        adds = [ms(r["ts"]) for r in recs if r["type"] == "add_to_cart"]
        buys = [ms(r["ts"]) for r in recs if r["type"] == "purchase"]
        if adds and not any(b > adds[-1] for b in buys):
            found["cart never bought on this device"] += 1
        if len(owners.get(dev, ())) == 0 and any(key_of(r) for r in recs):
            raise AssertionError(f"anonymous device {dev} identified itself")

    # a customer seen on two of its devices; a key used on the site before the CRM knew it
    customer_devices = defaultdict(set)
    first_click = {}
    for rec in clicks:
        for c in owners.get(rec["device_id"], ()):
            customer_devices[c.customer_id].add(rec["device_id"])
        k = key_of(rec)
        if k:
            first_click.setdefault(k, ms(rec["ts"]))
    found["customer on 2+ devices"] = sum(len(d) >= 2 for d in customer_devices.values())
    crm_keys = {}
    for rec in crm:
        k = key_of(rec)
        if k:
            crm_keys.setdefault(k, ms(rec["ts"]))
    found["key on the site before the CRM"] = sum(t < crm_keys.get(k, 1 << 62) for k, t in first_click.items())
    return found


def test_emails_hash_to_the_customers_key(shop):
    spec = ShopSpec(events=5000)
    customers = population(spec)
    by_id = {c.customer_id: c for c in customers}
    owners: dict[str, list] = defaultdict(list)
    for c in customers:
        assert len(c.keys) >= len(c.emails)
        for email, key in zip(c.emails, c.keys, strict=False):
            assert key == sha(email)  # the key is derived from the e-mail
        for d in c.devices:
            owners[d].append(c)
    assert sum(bool(c.emails) for c in customers) > 0.7 * len(customers)
    assert any(c.keys and not c.emails for c in customers) or len(customers) < 30
    checked = 0
    for role, rec in shop:
        k = key_of(rec)
        if k is None:
            continue
        if role == CRM_CHANGES:
            assert k in by_id[rec["customer_id"]].keys, rec
        else:
            assert any(k in c.keys for c in owners[rec["device_id"]]), rec
        if "email" in rec:
            checked += 1
    assert checked > 0


def test_erased_customers_go_quiet_in_the_crm(shop):
    erased_at = {
        rec["customer_id"]: ms(rec["ts"]) for role, rec in shop if role == CRM_CHANGES and rec["op"] == "erase"
    }
    assert erased_at
    for role, rec in shop:
        if role == CRM_CHANGES and rec["customer_id"] in erased_at:
            assert ms(rec["ts"]) <= erased_at[rec["customer_id"]]


# --- hostile input and files ------------------------------------------------------------------


def _rejected(role: str, rec: dict) -> bool:
    avro = pytest.importorskip("profilestream.codec.avro")
    validation = pytest.importorskip("profilestream.codec.validation")
    rules = pytest.importorskip("profilestream.domain.rules").Rules()
    try:
        validation.to_event(role, avro.from_json(role, rec), rules)
    except (validation.Rejected, ValueError):
        return True
    return False


def test_bad_records_each_break_the_contract():
    spec = ShopSpec()
    bad = bad_records(spec, 2 * len(BAD_KINDS))
    assert bad == bad_records(spec, 2 * len(BAD_KINDS))
    assert [role for role, _ in bad] == [role for role, _ in BAD_KINDS] * 2
    for (role, rec), (_, what) in zip(bad, BAD_KINDS * 2, strict=True):
        json.dumps(rec)
        assert _rejected(role, rec), (what, rec)


def test_write_jsonl_mixes_in_the_bad_records(tmp_path):
    spec = ShopSpec(events=3000, bad=25)
    clicks, crm = tmp_path / "clickstream.jsonl", tmp_path / "crm-changes.jsonl"
    counts = write_jsonl(spec, clicks, crm)
    lines = {CLICKSTREAM: clicks.read_text().splitlines(), CRM_CHANGES: crm.read_text().splitlines()}
    assert counts == {CLICKSTREAM: len(lines[CLICKSTREAM]), CRM_CHANGES: len(lines[CRM_CHANGES]), "bad": 25}
    assert counts[CLICKSTREAM] + counts[CRM_CHANGES] == 3025
    rejected = [(role, i) for role in lines for i, line in enumerate(lines[role]) if _rejected(role, json.loads(line))]
    assert len(rejected) == 25
    assert len({i // 100 for role, i in rejected if role == CLICKSTREAM}) > 5  # spread, not bunched
    good = write_jsonl(ShopSpec(events=3000), tmp_path / "a.jsonl", tmp_path / "b.jsonl")
    assert good["bad"] == 0
    assert [json.loads(x) for x in (tmp_path / "b.jsonl").read_text().splitlines()] == list(
        records(ShopSpec(events=3000), CRM_CHANGES)
    )


# --- speed: measured and printed, never asserted -------------------------------------------------


def test_generation_rate_is_printed(capsys):
    n = 200_000
    began = time.perf_counter()
    count = sum(1 for _ in generate(ShopSpec(events=n, seed=3)))
    took = time.perf_counter() - began
    assert count == n
    with capsys.disabled():
        print(f"\nsample shop: {n} events in {took:.2f}s = {n / took:,.0f} events/s")
