"""`profilestream serve` in a real browser (issue 13 acceptance): headless Chromium, driven by
Playwright, against `serve` running as its own process on the real broker.

1. A shop page on another localhost origin embeds the two-line snippet; the page view goes out on
   load and brings the device cookie, the test clicks "Add to cart", and both events reach
   `clickstream` under the device id of the page's cookie.
2. After a bounded run turned collected events and a CRM change into a profile, the single
   customer view `/ui/profiles/{device}` shows what a marketer reads there: the customer id, the
   cart line and the campaigns; a screenshot is saved (into tmp; with `SCV_SCREENSHOT=<path>` also
   there, which is how docs/img/scv.png is made).

Chromium is the system's (Debian's `chromium`; `PS_CHROMIUM` names another binary), not one that
Playwright downloads: without it, or without playwright, the tests skip and say which is missing.
"""

from __future__ import annotations

import functools
import os
import shutil
import threading
import time
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from profilestream import cli
from profilestream.codec.times import format_time
from profilestream.codec.validation import hash_email
from profilestream.devtools.broker import free_port
from support import e2e
from support.serve import ServeProcess, eventually

pytestmark = pytest.mark.broker

SCREENSHOT_COPY = os.environ.get("SCV_SCREENSHOT")  # read now: the config fixture drops PROFILESTREAM_*
TOKEN = "browser-test-token"

SHOP = """<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Shoe shop</title>
<script>window.ps=window.ps||function(){(ps.q=ps.q||[]).push(arguments)};</script>
<script async src="COLLECTOR/v1/ps.js"></script></head>
<body><h1>Red shoe</h1><p>59.90</p>
<button id="add" onclick="ps('add_to_cart', {product_id: 'sku-red-shoe', price: 59.9})">Add to cart</button>
</body></html>
"""


def chromium() -> str:
    for candidate in (os.environ.get("PS_CHROMIUM"), "chromium", "chromium-browser", "google-chrome"):
        found = candidate and shutil.which(candidate)
        if found:
            return found
    pytest.skip("no Chromium: install Debian's `chromium` package (apt-get install chromium) or set PS_CHROMIUM")


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is in the 'test' extra")
    executable = chromium()
    with sync_api.sync_playwright() as playwright:
        # --no-sandbox: CI containers run as root, where Chromium's sandbox cannot start
        launched = playwright.chromium.launch(executable_path=executable, headless=True, args=["--no-sandbox"])
        try:
            yield launched
        finally:
            launched.close()


class _Quiet(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def shop(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A static site on its own localhost port (another origin than the collector's, the same
    site: the cookie is first-party, as for shop.example and collect.shop.example)."""
    root = tmp_path / "site"
    root.mkdir()
    server = ThreadingHTTPServer(("127.0.0.1", free_port()), functools.partial(_Quiet, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", root
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def edge(config_path: Path, tmp_path: Path, shop: tuple[str, Path]) -> Iterator[ServeProcess]:
    port = free_port()
    with config_path.open("a", encoding="utf-8") as toml:
        toml.write(
            f'\n[serve]\nport = {port}\ncors_origins = ["{shop[0]}"]\napi_token = "{TOKEN}"\n\n'
            '[time]\nallowed_lateness = "0s"\n'
        )
    assert cli.main(["topics", "create", "--config", str(config_path)]) == 0
    serve = ServeProcess(config_path, port, tmp_path / "serve.log")
    try:
        serve.wait_ready()
        yield serve
    finally:
        code = serve.stop()
        assert code == 0, serve.log()


def test_a_click_on_a_page_with_the_snippet_reaches_the_topic_with_the_pages_device_cookie(browser, shop, edge, config):
    origin, root = shop
    (root / "shoe.html").write_text(SHOP.replace("COLLECTOR", edge.url), encoding="utf-8")
    context = browser.new_context()
    try:
        page = context.new_page()
        page.goto(f"{origin}/shoe.html?utm_source=google&utm_medium=cpc&utm_campaign=shoes")
        cookies = eventually(context.cookies, lambda found: any(c["name"] == "ps_device" for c in found))
        (cookie,) = [c for c in cookies if c["name"] == "ps_device"]
        assert cookie["sameSite"] == "Lax" and cookie["path"] == "/" and cookie["expires"] > time.time() + 86400
        page.get_by_role("button", name="Add to cart").click()
        clicks = eventually(lambda: e2e.records(config, "clickstream"), lambda r: len(r) >= 2)
    finally:
        context.close()
    assert [c["type"] for c in clicks] == ["page_view", "add_to_cart"]
    assert {c["device_id"] for c in clicks} == {cookie["value"]}
    view, cart = clicks
    assert view["url"].startswith(f"{origin}/shoe.html?") and view["campaign"]["name"] == "shoes"
    assert (cart["product_id"], cart["price"]) == ("sku-red-shoe", 59.9)


def test_the_single_customer_view_shows_the_customer_the_cart_and_the_campaigns(
    browser, edge, config, config_path, tmp_path
):
    address = "ann.example@example.com"
    base = int(time.time() * 1000) - 3_600_000  # an hour ago, a minute a step
    at = lambda minute: format_time(base + minute * 60_000)  # noqa: E731
    visitor = httpx.Client(base_url=edge.url)
    landing = "https://shop.example/?utm_source=newsletter&utm_medium=email&utm_campaign=spring-sale"
    answer = visitor.post(
        "/v1/collect",
        json={
            "events": [
                {"type": "page_view", "url": landing, "ts": at(0)},
                {"type": "product_view", "product_id": "sku-blue-bag", "ts": at(1)},
                {"type": "product_view", "product_id": "sku-red-shoe", "ts": at(2)},
                {"type": "add_to_cart", "product_id": "sku-red-shoe", "price": 59.9, "quantity": 2, "ts": at(3)},
                {"type": "login", "email": address, "ts": at(4)},
            ]
        },
    )
    assert answer.status_code == 202 and answer.json()["accepted"] == 5, answer.text
    device = visitor.cookies["ps_device"]
    crm = {
        "change_id": "crm-1",
        "ts": at(5),
        "customer_id": "C-1001",
        "op": "upsert",
        "email": address,
        "attributes": {"tier": "gold", "city": "Hamburg"},
        "lead_status": "offer_created",
        "marketing_consent": True,
    }
    e2e.produce(config_path, "crm-changes", [crm], tmp_path)
    e2e.run(config_path)
    ready = eventually(
        lambda: visitor.get(f"/v1/profiles/{device}", headers={"authorization": f"Bearer {TOKEN}"}),
        lambda r: r.status_code == 200 and r.json()["customer_id"] == "C-1001",
    )
    assert ready.status_code == 200 and ready.json()["customer_key"] == hash_email(address), ready.text

    context = browser.new_context(
        viewport={"width": 1280, "height": 900}, extra_http_headers={"authorization": f"Bearer {TOKEN}"}
    )
    try:
        page = context.new_page()
        response = page.goto(f"{edge.url}/ui/profiles/{device}")
        assert response is not None and response.status == 200
        assert page.locator("h1").inner_text() == "C-1001"

        def section(title: str) -> Any:
            return page.locator("section", has=page.locator("h2", has_text=title))

        assert device in section("Identifiers and devices").inner_text()
        cart_rows = section("Cart").locator("tr").all_inner_texts()
        assert [row.split("\t") for row in cart_rows[1:]] == [["sku-red-shoe", "2", "59.90"]]
        campaigns = section("Campaigns").locator("tr").all_inner_texts()
        assert [row.split("\t")[:3] for row in campaigns[1:]] == [["newsletter", "email", "spring-sale"]]
        crm_text = section("CRM").inner_text()
        assert "offer_created" in crm_text and "opted in" in crm_text and "Hamburg" in crm_text
        assert address not in page.content()
        shot = tmp_path / "scv.png"
        page.screenshot(path=str(shot), full_page=True)
    finally:
        context.close()
    assert shot.read_bytes().startswith(b"\x89PNG")
    if SCREENSHOT_COPY:
        shutil.copyfile(shot, SCREENSHOT_COPY)
    # without the token the page is refused
    assert httpx.get(f"{edge.url}/ui/profiles/{device}").status_code == 401
