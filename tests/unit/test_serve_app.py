"""`profilestream serve` over HTTP (CONTRACT.md "HTTP"), with the real app and store and a
producer that keeps what it is handed: status codes, bodies, headers, cookies, auth."""

from __future__ import annotations

import json
import re

import pytest

from profilestream.codec.validation import hash_email
from profilestream.serve.app import GIF
from support.serve import edge, profile

ANN = profile(
    "p-ann",
    customer_id="C-1",
    customer_key=hash_email("ann@example.com"),
    device_ids=["dev-phone", "dev-laptop"],
    cart=[{"product_id": "sku-red-shoe", "quantity": 2, "price": 59.9}],
    campaigns=[
        {
            "source": "newsletter",
            "medium": "email",
            "name": "xmas",
            "first_ts": "2026-11-20T10:00:00.000Z",
            "last_ts": "2026-11-21T09:00:00.000Z",
        }
    ],
    attributes={"tier": "gold"},
    lead_status="offer_created",
    marketing_consent=True,
)


def cookie_of(response) -> dict[str, str]:
    header = response.headers.get("set-cookie")
    assert header, "no Set-Cookie"
    name_value, *attrs = [part.strip() for part in header.split(";")]
    name, _, value = name_value.partition("=")
    return {"name": name, "value": value, **{a.partition("=")[0]: a.partition("=")[2] for a in attrs}}


def test_a_request_without_a_cookie_gets_one_and_the_next_sends_it_back(tmp_path):
    with edge(tmp_path) as e:
        first = e.client.post("/v1/collect", content=b'{"type": "page_view"}')
        assert first.status_code == 202 and first.json() == {"accepted": 1, "rejected": []}
        cookie = cookie_of(first)
        assert cookie["name"] == "ps_device"
        assert cookie["Max-Age"] == str(400 * 86400) and cookie["Path"] == "/" and cookie["SameSite"] == "Lax"
        assert "Secure" not in cookie  # plain HTTP, cookie_secure off
        second = e.client.post("/v1/collect", content=b'{"type": "product_view", "product_id": "sku"}')
        assert second.status_code == 202
        devices = [key for key, _ in e.producer.sent]
        assert devices == [cookie["value"], cookie["value"]]


def test_the_cookie_is_secure_over_https_or_by_setting(tmp_path):
    with edge(tmp_path) as e:
        e.client.base_url = "https://testserver"
        assert "Secure" in cookie_of(e.client.post("/v1/collect", content=b'{"type": "page_view"}'))
    with edge(tmp_path / "b", cookie_secure=True) as e:
        assert "Secure" in cookie_of(e.client.post("/v1/collect", content=b'{"type": "page_view"}'))


def test_a_blocked_cookie_value_counts_as_none_and_is_replaced(tmp_path):
    with edge(tmp_path) as e:
        e.client.cookies.set("ps_device", "undefined")
        response = e.client.post("/v1/collect", content=b'{"type": "page_view"}')
        assert response.status_code == 202
        assert cookie_of(response)["value"] not in ("undefined", "")
        assert e.producer.sent[0][0] == cookie_of(response)["value"]


def test_a_mixed_batch_is_202_with_the_reason_for_each_rejected_event(tmp_path):
    body = {"events": [{"type": "page_view"}, {"type": "nope"}, {"type": "add_to_cart"}, {"type": "login"}]}
    with edge(tmp_path) as e:
        response = e.client.post("/v1/collect", json=body)
        assert response.status_code == 202
        answer = response.json()
        assert answer["accepted"] == 2
        assert [r["index"] for r in answer["rejected"]] == [1, 2]
        assert all(r["error"] for r in answer["rejected"])
        assert len(e.producer.sent) == 2


BAD_BODIES = {
    "malformed JSON": b'{"type": "page_view"',
    "a wrong type": b'{"type": "page_view", "quantity": "many"}',
    "a missing type": b'{"device_id": "d-1"}',
    "a 600-event batch": json.dumps({"events": [{"type": "page_view"}] * 600}).encode(),
    "bad UTF-8": b'{"type": "page_view", "url": "\xff\xfe"}',
    "a blocked device_id": b'{"type": "page_view", "device_id": "null"}',
    "not an object": b'"page_view"',
}


@pytest.mark.parametrize("name", BAD_BODIES)
def test_bad_input_is_400_with_a_reason_and_nothing_is_produced(tmp_path, name):
    with edge(tmp_path) as e:
        response = e.client.post("/v1/collect", content=BAD_BODIES[name])
        assert response.status_code == 400
        assert response.headers["content-type"] == "application/json"
        assert response.json()["error"]
        assert e.producer.sent == []
        metrics = e.client.get("/metrics").text
        assert re.search(r'profilestream_serve_events_rejected_total\{endpoint="collect",reason="\w+"\} 1\.0', metrics)


def test_a_body_over_max_body_is_413_whether_announced_or_streamed(tmp_path):
    with edge(tmp_path, max_body=1000) as e:
        big = json.dumps({"type": "page_view", "url": "x" * 2000}).encode()
        response = e.client.post("/v1/collect", content=big)
        assert response.status_code == 413 and "max_body" in response.json()["error"]

        def chunks():
            yield big[:600]
            yield big[600:]

        response = e.client.post("/v1/collect", content=chunks())  # no Content-Length: chunked
        assert response.status_code == 413
        assert e.producer.sent == []


PIXEL_QUERIES = {
    "a newsletter link": "utm_source=newsletter&utm_medium=email&utm_campaign=xmas&ps_ck=abc",
    "a wrong type": "type=teleport",
    "a number that is not one": "type=add_to_cart&product_id=p&quantity=lots",
    "a blocked device_id": "device_id=null",
    "bad UTF-8": "url=%ff%fe",
    "a missing product": "type=add_to_cart",
    "nothing at all": "",
    "an unknown parameter": "foo=bar&cb=123",
    "a huge id": "device_id=" + "x" * 5000,
}


@pytest.mark.parametrize("name", PIXEL_QUERIES)
def test_the_pixel_answers_a_gif_whatever_the_input(tmp_path, name):
    with edge(tmp_path) as e:
        response = e.client.get("/v1/pixel.gif?" + PIXEL_QUERIES[name])
        assert response.status_code == 200
        assert response.headers["content-type"] == "image/gif"
        assert response.content == GIF and GIF.startswith(b"GIF89a")
        assert "no-store" in response.headers["cache-control"]


def test_a_pixel_from_a_newsletter_link_produces_the_key_and_campaign_and_sets_the_cookie(tmp_path):
    with edge(tmp_path) as e:
        response = e.client.get("/v1/pixel.gif?" + PIXEL_QUERIES["a newsletter link"])
        ((device, record),) = e.producer.sent
        assert record["type"] == "page_view" and record["customer_key"] == "abc"
        assert record["campaign"] == {"source": "newsletter", "medium": "email", "name": "xmas"}
        assert cookie_of(response)["value"] == device
        e.client.get("/v1/pixel.gif?type=teleport")
        assert len(e.producer.sent) == 1  # counted, not produced
        assert 'reason="invalid_type"' in e.client.get("/metrics").text


def test_cors_answers_the_configured_origins_only(tmp_path):
    with edge(tmp_path, cors_origins=("https://shop.example",)) as e:
        ok = e.client.options("/v1/collect", headers={"Origin": "https://shop.example"})
        assert ok.status_code == 204
        assert ok.headers["access-control-allow-origin"] == "https://shop.example"
        assert ok.headers["access-control-allow-credentials"] == "true"
        posted = e.client.post(
            "/v1/collect", content=b'{"type":"page_view"}', headers={"Origin": "https://shop.example"}
        )
        assert posted.headers["access-control-allow-origin"] == "https://shop.example"
        other = e.client.options("/v1/collect", headers={"Origin": "https://evil.example"})
        assert other.status_code == 403 and "access-control-allow-origin" not in other.headers
        posted = e.client.post(
            "/v1/collect", content=b'{"type":"page_view"}', headers={"Origin": "https://evil.example"}
        )
        assert "access-control-allow-origin" not in posted.headers


@pytest.mark.parametrize("identifier", ["dev-phone", "dev-laptop", "C-1", hash_email("ann@example.com"), "p-ann"])
def test_a_profile_is_found_by_every_identifier(tmp_path, identifier):
    with edge(tmp_path, [ANN]) as e:
        response = e.client.get(f"/v1/profiles/{identifier}")
        assert response.status_code == 200 and response.json() == ANN


def test_an_unknown_identifier_is_404_with_a_reason(tmp_path):
    with edge(tmp_path, [ANN]) as e:
        response = e.client.get("/v1/profiles/nobody")
        assert response.status_code == 404 and response.json()["error"]


def test_a_merged_away_profile_id_answers_the_survivor_through_a_chain(tmp_path):
    with edge(tmp_path, [ANN]) as e:
        e.follower.merged.update({"p-old": "p-mid", "p-mid": "p-ann"})
        assert e.client.get("/v1/profiles/p-old").json()["profile_id"] == "p-ann"
        e.follower.merged.update({"p-loop-a": "p-loop-b", "p-loop-b": "p-loop-a"})
        assert e.client.get("/v1/profiles/p-loop-a").status_code == 404  # corrupt data: no hang


def test_email_lookup_hashes_the_address_and_never_echoes_it(tmp_path):
    with edge(tmp_path, [ANN]) as e:
        found = e.client.get("/v1/profiles", params={"email": "  ANN@example.com "})
        assert found.status_code == 200 and found.json()["customer_id"] == "C-1"
        missing = e.client.get("/v1/profiles", params={"email": "bob@example.com"})
        assert missing.status_code == 404 and "bob" not in missing.text
        assert e.client.get("/v1/profiles").status_code == 400
        assert e.client.get("/v1/profiles", params={"email": "  "}).status_code == 400


def test_with_an_api_token_the_profiles_and_pages_need_it_and_the_collector_does_not(tmp_path):
    with edge(tmp_path, [ANN], api_token="s3cret") as e:
        for path in ("/v1/profiles/C-1", "/v1/profiles?email=ann@example.com", "/ui/", "/ui/profiles/C-1"):
            refused = e.client.get(path)
            assert refused.status_code == 401 and refused.json()["error"], path
            assert e.client.get(path, headers={"Authorization": "Bearer wrong"}).status_code == 401
            assert e.client.get(path, headers={"Authorization": "Bearer s3cret"}).status_code == 200, path
        assert e.client.post("/v1/collect", content=b'{"type":"page_view"}').status_code == 202
        assert e.client.get("/v1/pixel.gif").status_code == 200


def test_the_single_customer_view_shows_what_a_marketer_reads(tmp_path):
    with edge(tmp_path, [ANN]) as e:
        page = e.client.get("/ui/profiles/dev-phone")
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        for text in ("C-1", "dev-laptop", "sku-red-shoe", "newsletter", "xmas", "gold", "offer_created", "opted in"):
            assert text in page.text
        assert e.client.get("/ui/?q=C-1", follow_redirects=False).headers["location"] == "/ui/profiles/C-1"
        assert e.client.get("/ui/profiles/nobody").status_code == 404


def test_the_page_escapes_what_websites_sent(tmp_path):
    evil = profile("p-x", device_ids=["<script>alert(1)</script>"], attributes={"<b>": "<img src=x>"})
    with edge(tmp_path, [evil]) as e:
        page = e.client.get("/ui/profiles/p-x").text
        assert "<script>alert" not in page and "<img src=x>" not in page
        assert "&lt;script&gt;" in page


def test_health_readiness_openapi_snippet_and_unknown_paths(tmp_path):
    with edge(tmp_path) as e:
        assert e.client.get("/healthz").json() == {"status": "ok"}
        assert e.client.get("/readyz").status_code == 200
        e.follower.broker_ok, e.follower.problem = False, "the broker does not answer"
        not_ready = e.client.get("/readyz")
        assert not_ready.status_code == 503 and not_ready.json()["reason"] == "the broker does not answer"
        spec = e.client.get("/v1/openapi.json").json()
        assert spec["openapi"].startswith("3.") and "/v1/collect" in spec["paths"]
        js = e.client.get("/v1/ps.js")
        assert js.headers["content-type"].startswith("text/javascript") and b"sendBeacon" in js.content
        missing = e.client.get("/v2/nothing")
        assert missing.status_code == 404 and missing.json()["error"]
        assert e.client.delete("/v1/collect").status_code == 405
    assert e.producer.closed  # flushed on shutdown
