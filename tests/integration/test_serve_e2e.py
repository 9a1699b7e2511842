"""`profilestream serve` end to end, through the real embedded broker (issue 13 acceptance):
events posted to the collector and a newsletter pixel reach `clickstream`, a bounded
`run --until-idle` turns them into profiles, serve's store follows `profiles`, and the profile
API answers by device id, by a merged-away profile id and by e-mail address, without the clear
address in any log line."""

from __future__ import annotations

import time

import httpx
import pytest

from profilestream import cli
from profilestream.codec.times import format_time
from profilestream.codec.validation import hash_email
from profilestream.devtools.broker import free_port
from profilestream.kafka.clients import read_topic
from support import e2e
from support.serve import ServeProcess, eventually

ADDRESS = "Ann.Example@Example.com"
KEY = hash_email(ADDRESS)


@pytest.mark.broker
def test_collected_events_become_a_profile_the_api_answers(config_path, config, tmp_path):
    port = free_port()
    with config_path.open("a", encoding="utf-8") as toml:
        toml.write(f'\n[serve]\nport = {port}\n\n[time]\nallowed_lateness = "0s"\n')
    assert cli.main(["topics", "create", "--config", str(config_path)]) == 0
    serve = ServeProcess(config_path, port, tmp_path / "serve.log")
    try:
        serve.wait_ready()
        base = int(time.time() * 1000) - 600_000  # ten minutes ago, a minute a step
        at = lambda minute: format_time(base + minute * 60_000)  # noqa: E731
        browser = httpx.Client(base_url=serve.url)
        landing = "https://shop.example/?utm_source=google&utm_medium=cpc&utm_campaign=shoes"
        first = browser.post(
            "/v1/collect",
            json={
                "events": [
                    {"type": "page_view", "url": landing, "ts": at(0)},
                    {"type": "teleport", "ts": at(0)},
                    {"type": "add_to_cart", "product_id": "sku-red-shoe", "price": 59.9, "ts": at(1)},
                ]
            },
        )
        assert first.status_code == 202, first.text
        assert first.json()["accepted"] == 2 and [r["index"] for r in first.json()["rejected"]] == [1]
        device = browser.cookies["ps_device"]
        again = browser.post("/v1/collect", json={"type": "product_view", "product_id": "sku-2", "ts": at(2)})
        assert again.status_code == 202 and browser.cookies["ps_device"] == device  # sent back, kept
        # the newsletter: an e-mail client opens the pixel with the key and the campaign
        mail = httpx.Client(base_url=serve.url)
        gif = mail.get(
            "/v1/pixel.gif",
            params={
                "utm_source": "newsletter",
                "utm_medium": "email",
                "utm_campaign": "xmas",
                "ps_ck": KEY,
                "ts": at(3),
            },
        )
        assert gif.status_code == 200 and gif.content.startswith(b"GIF89a")
        mail_device = mail.cookies["ps_device"]
        assert mail_device != device
        # the browser's visitor logs in with the address: its anonymous profile merges into the key's
        login = browser.post("/v1/collect", json={"type": "login", "email": ADDRESS, "ts": at(4)})
        assert login.status_code == 202

        clicks = eventually(lambda: e2e.records(config, "clickstream"), lambda r: len(r) >= 5, 30)
        assert len(clicks) == 5  # every accepted event, the rejected one not
        assert {c["device_id"] for c in clicks} == {device, mail_device}
        raw = b"".join(m.value for m in read_topic(config, config.topics.clickstream)).lower()
        assert ADDRESS.lower().encode() not in raw

        e2e.run(config_path)

        answer = eventually(
            lambda: browser.get(f"/v1/profiles/{device}"),
            lambda r: r.status_code == 200 and mail_device in r.json()["device_ids"],
        )
        assert answer.status_code == 200, answer.text
        profile = answer.json()
        assert set(profile["device_ids"]) == {device, mail_device}
        assert profile["customer_key"] == KEY
        assert {(c["source"], c["medium"], c["name"]) for c in profile["campaigns"]} == {
            ("google", "cpc", "shoes"),
            ("newsletter", "email", "xmas"),
        }
        assert [(line["product_id"], line["quantity"]) for line in profile["cart"]] == [("sku-red-shoe", 1)]

        (merge,) = e2e.records(config, "merges")
        assert merge["into_profile_id"] == profile["profile_id"]
        merged_away = eventually(
            lambda: browser.get(f"/v1/profiles/{merge['from_profile_id']}"),
            lambda r: r.status_code == 200 and r.json()["profile_id"] == profile["profile_id"],
        )
        assert merged_away.json()["profile_id"] == profile["profile_id"]

        by_email = browser.get("/v1/profiles", params={"email": ADDRESS.upper()})
        assert by_email.status_code == 200 and by_email.json()["profile_id"] == profile["profile_id"]
        assert browser.get(f"/v1/profiles/{mail_device}").json()["profile_id"] == profile["profile_id"]
        assert browser.get("/v1/profiles/nobody").status_code == 404
    finally:
        code = serve.stop()
    assert code == 0, serve.log()
    log = serve.log().lower()
    assert ADDRESS.lower() not in log and ADDRESS.lower().replace("@", "%40") not in log


@pytest.mark.broker
def test_with_a_schema_registry_serve_frames_what_it_produces_and_reads_framed_outputs(config_path):
    """`schema_registry.url` set (the client's in-process `mock://` registry, so serve runs in
    this process): collected events are framed under `<clickstream>-value`, and framed profiles
    and merges (what a run with the registry writes) are answered."""
    import uuid

    from starlette.testclient import TestClient

    from profilestream.codec import avro, registry
    from profilestream.config import load_config
    from profilestream.kafka.clients import produce_records
    from profilestream.serve import server
    from support.serve import profile

    url = f"mock://{uuid.uuid4().hex}"
    framed = config_path.with_name("with-registry.toml")
    framed.write_text(config_path.read_text() + f'\n[schema_registry]\nurl = "{url}"\n')
    config = load_config(str(framed), env={})
    assert cli.main(["topics", "create", "--config", str(framed)]) == 0
    survivor = profile("p-b", customer_id="c-7", device_ids=["d-1"])
    merge = {"from_profile_id": "p-a", "into_profile_id": "p-b", "reason": "login", "ts": 1_780_000_000_000}
    produce_records(config, "profiles", [("p-b", avro.from_json("profiles", survivor))])
    produce_records(config, "merges", [("p-b", merge)])

    with TestClient(server.build(config)) as client:
        ready = eventually(lambda: client.get("/readyz"), lambda r: r.status_code == 200, 30)
        assert ready.status_code == 200, ready.text
        assert client.get("/v1/profiles/d-1").json()["customer_id"] == "c-7"
        assert client.get("/v1/profiles/p-a").json()["profile_id"] == "p-b"  # the framed merge was read
        sent = client.post("/v1/collect", json={"events": [{"type": "page_view", "device_id": "d-9"}] * 3})
        assert sent.status_code == 202 and sent.json()["accepted"] == 3
    # leaving the client ran the shutdown: the producer flushed
    topic = config.topics.name("clickstream")
    values = [m.value for m in read_topic(config, topic)]
    subject_id = registry.client(url).get_latest_version(f"{topic}-value").schema_id
    assert [registry.schema_id(v) for v in values] == [subject_id] * 3
    assert {registry.wire_for(config).decode("clickstream", v)["device_id"] for v in values} == {"d-9"}
