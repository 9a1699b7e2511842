"""The ASGI application of `profilestream serve`: routes, headers, cookies, auth; no rules.

Starlette on uvicorn (httptools, uvloop) was chosen on measurement (BENCHMARKS.md "HTTP edge").
The rules of the collector are `collector.Collector`'s, the answers come from `follow.Follower`,
the events leave through `producer.EventProducer`; this module only speaks HTTP:

- every answer is JSON except the pixel (a GIF, always: a bad event is counted, not produced),
  the snippet and the pages; bad input is a 4xx with `{"error": reason}`, never a 5xx;
- the device cookie (`serve.cookie_name`): `Max-Age` from `serve.cookie_max_age`, `Path=/`,
  `SameSite=Lax`, `Secure` when the request came over HTTPS (uvicorn reads `X-Forwarded-Proto`
  from the proxies it trusts) or when `serve.cookie_secure` is true; a cookie whose value is not
  a usable device id (blocked, too long, odd characters) counts as none and is replaced;
- CORS for the origins of `serve.cors_origins` (credentials allowed, so the cookie travels);
- `serve.api_token` guards `/v1/profiles*` and `/ui/*` (compared in constant time);
- nothing that a request carries is logged: uvicorn's access log is off (its request line would
  hold a pixel's `email` or the `?email=` of a lookup).
"""

from __future__ import annotations

import hmac
import json
import re
from contextlib import asynccontextmanager
from dataclasses import dataclass
from importlib import resources
from typing import Any
from urllib.parse import quote

from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Route

from profilestream.codec import avro
from profilestream.codec.validation import MAX_ID_LENGTH, customer_key_of, now
from profilestream.serve import openapi, ui
from profilestream.serve.collector import BadRequest, Collector, Outcome
from profilestream.serve.producer import Busy

# the smallest transparent 1x1 GIF (43 bytes)
GIF = bytes.fromhex("47494638396101000100800000000000ffffff21f90401000000002c00000000010001000002024401003b")
_SAFE_COOKIE = re.compile(r"[A-Za-z0-9._~-]{1,128}")
_JSON = "application/json"


def _json(payload: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    body = json.dumps(payload, ensure_ascii=False, separators=(",", ":"))
    return Response(body, status, headers, media_type=_JSON)


def _error(status: int, reason: str, headers: dict[str, str] | None = None) -> Response:
    return _json({"error": reason}, status, headers)


class TooLarge(Exception):
    pass


@dataclass
class Parts:
    """What the app needs: the collector, a producer (`send(records)`, `close()`), a follower
    (`find`, `latest_triggers`, `readiness`, `start`, `stop`) and the `[serve]` settings."""

    collector: Collector
    producer: Any
    follower: Any
    settings: Any
    close: Any = None  # called last at shutdown (closes the store)


class Metrics:
    """The edge's Prometheus counters, on a registry of their own (`/metrics`)."""

    def __init__(self, producer: Any) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.accepted = Counter(
            "profilestream_serve_events_accepted",
            "Events handed to the producer, per endpoint",
            ["endpoint"],
            registry=self.registry,
        )
        self.rejected = Counter(
            "profilestream_serve_events_rejected",
            "Events or requests refused, per endpoint and reason (the run's dead-letter labels where they apply)",
            ["endpoint", "reason"],
            registry=self.registry,
        )
        self.lookups = Counter(
            "profilestream_serve_lookups", "Profile lookups, by result", ["result"], registry=self.registry
        )
        delivered = Gauge(
            "profilestream_serve_delivered", "Collected events the broker acknowledged", registry=self.registry
        )
        delivered.set_function(lambda: getattr(producer, "delivered", 0))
        failed = Gauge(
            "profilestream_serve_delivery_failures",
            "Collected events the broker did not take after they were accepted",
            registry=self.registry,
        )
        failed.set_function(lambda: getattr(producer, "failed", 0))


def snippet() -> bytes:
    return resources.files("profilestream.serve").joinpath("static/profilestream.js").read_bytes()


def create_app(parts: Parts) -> Starlette:
    s = parts.settings
    collector, producer, follower = parts.collector, parts.producer, parts.follower
    metrics = Metrics(producer)
    cookie_tail = f"; Max-Age={s.cookie_max_age // 1000}; Path=/; SameSite=Lax"
    origins = frozenset(getattr(s, "cors_origins", ()))
    always_secure = bool(getattr(s, "cookie_secure", False))
    token = s.api_token.encode()
    js = snippet()
    spec = json.dumps(openapi.description())

    def device_cookie(request: Request) -> str | None:
        value = request.cookies.get(s.cookie_name)
        if value is None or not _SAFE_COOKIE.fullmatch(value) or collector.rules.usable(value) is None:
            return None
        return value

    def set_cookie(request: Request, response: Response, device: str | None) -> None:
        if device is None:
            return
        secure = "; Secure" if always_secure or request.url.scheme == "https" else ""
        response.headers.append("set-cookie", f"{s.cookie_name}={device}{cookie_tail}{secure}")

    def cors(request: Request, response: Response) -> Response:
        origin = request.headers.get("origin")
        if origin is not None and (origin in origins or "*" in origins):
            response.headers["access-control-allow-origin"] = origin
            response.headers["access-control-allow-credentials"] = "true"
            response.headers["vary"] = "Origin"
        return response

    def authorized(request: Request) -> bool:
        if not token:
            return True
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), token)

    def unauthorized() -> Response:
        return _error(401, "needs Authorization: Bearer <serve.api_token>", {"www-authenticate": "Bearer"})

    async def read_body(request: Request) -> bytes:
        length = request.headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > s.max_body:
            raise TooLarge
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > s.max_body:
                raise TooLarge
            chunks.append(chunk)
        return b"".join(chunks)

    def hand_over(outcome: Outcome, endpoint: str) -> None:
        if outcome.records:
            producer.send(outcome.records)
            metrics.accepted.labels(endpoint).inc(len(outcome.records))
        for label in outcome.labels:
            metrics.rejected.labels(endpoint, label).inc()

    # --- the collector -------------------------------------------------------------------------

    async def collect(request: Request) -> Response:
        try:
            body = await read_body(request)
        except TooLarge:
            metrics.rejected.labels("collect", "body_too_large").inc()
            return cors(request, _error(413, f"the body is over serve.max_body ({s.max_body} bytes)"))
        cookie = device_cookie(request)
        try:
            events = collector.parse_body(body)
        except BadRequest as exc:
            metrics.rejected.labels("collect", exc.label).inc()
            return cors(request, _error(400, str(exc)))
        outcome = collector.collect(events, cookie, now())
        try:
            hand_over(outcome, "collect")
        except Busy as exc:
            return cors(request, _error(503, str(exc), {"retry-after": "1"}))
        accepted = len(outcome.records)
        payload: dict[str, Any] = {"accepted": accepted, "rejected": outcome.rejected}
        if accepted:
            response = _json(payload, 202)
        else:
            first = outcome.rejected[0]["error"] if outcome.rejected else "no event"
            more = f" (and {len(outcome.rejected) - 1} more)" if len(outcome.rejected) > 1 else ""
            payload = {"error": f"no event accepted: {first}{more}", **payload}
            response = _json(payload, 400)
        set_cookie(request, response, outcome.new_device or (cookie if accepted else None))
        return cors(request, response)

    async def preflight(request: Request) -> Response:
        origin = request.headers.get("origin")
        if origin is None or not (origin in origins or "*" in origins):
            return _error(403, f"origin {origin!r} is not in serve.cors_origins")
        response = Response(status_code=204)
        response.headers["access-control-allow-methods"] = "POST, OPTIONS"
        response.headers["access-control-allow-headers"] = "content-type"
        response.headers["access-control-max-age"] = "600"
        return cors(request, response)

    async def pixel(request: Request) -> Response:
        cookie = device_cookie(request)
        outcome = Outcome()
        try:
            event = collector.pixel_event(request.query_params)
            outcome = collector.collect([event], cookie, now())
        except avro.Rejected as exc:
            outcome.reject(0, exc)
        except Exception:  # never a broken image (CONTRACT.md "HTTP"): counted, not produced
            outcome.labels.append("unreadable")
        try:
            hand_over(outcome, "pixel")
        except Busy:
            metrics.rejected.labels("pixel", "busy").inc()
        response = Response(GIF, 200, {"cache-control": "no-store, max-age=0"}, media_type="image/gif")
        set_cookie(request, response, outcome.new_device or (cookie if outcome.records else None))
        return response

    async def script(request: Request) -> Response:
        return Response(js, 200, {"cache-control": "public, max-age=300"}, media_type="text/javascript")

    # --- the profile API -----------------------------------------------------------------------

    def found(profile: dict[str, Any] | None, what: str) -> Response:
        metrics.lookups.labels("found" if profile is not None else "none").inc()
        if profile is None:
            return _error(404, f"no profile for {what}")
        return _json(profile)

    async def profile(request: Request) -> Response:
        if not authorized(request):
            return unauthorized()
        identifier = request.path_params["identifier"]
        if len(identifier) > MAX_ID_LENGTH:
            return _error(404, f"no profile for an identifier of {len(identifier)} characters")
        return found(follower.find(identifier), f"{identifier!r}")

    async def profile_by_email(request: Request) -> Response:
        if not authorized(request):
            return unauthorized()
        email = request.query_params.get("email")
        if email is None:
            return _error(400, "needs ?email=ADDRESS (or /v1/profiles/{identifier})")
        try:
            key = customer_key_of(None, email, collector.rules)
        except avro.Rejected as exc:
            return _error(400, str(exc))
        if key is None:
            return _error(400, "the email parameter is blank or a blocked value")
        return found(follower.find(key), "that e-mail address")

    async def description(request: Request) -> Response:
        return Response(spec, media_type=_JSON)

    # --- the single customer view --------------------------------------------------------------

    async def ui_search(request: Request) -> Response:
        if not authorized(request):
            return unauthorized()
        query = request.query_params.get("q", "").strip()
        if query:
            return RedirectResponse(ui.profile_link(query), 303)
        return HTMLResponse(ui.search_page())

    async def to_ui(request: Request) -> Response:
        return RedirectResponse("/ui/", 308)

    async def ui_profile(request: Request) -> Response:
        if not authorized(request):
            return unauthorized()
        identifier = request.path_params["identifier"]
        p = follower.find(identifier) if len(identifier) <= MAX_ID_LENGTH else None
        if p is None:
            return HTMLResponse(ui.search_page(identifier, f"No profile holds {identifier!r}."), 404)
        return HTMLResponse(ui.profile_page(p, follower.latest_triggers(p["profile_id"]), identifier))

    # --- operations ----------------------------------------------------------------------------

    async def healthz(request: Request) -> Response:
        return _json({"status": "ok"})

    async def readyz(request: Request) -> Response:
        ready, reason = follower.readiness()
        if ready:
            return _json({"status": "ready"})
        return _json({"status": "not ready", "reason": reason}, 503)

    async def prometheus(request: Request) -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    async def not_found(request: Request, exc: Exception) -> Response:
        return _error(404, f"no such page: {quote(request.url.path)}")

    async def not_allowed(request: Request, exc: Exception) -> Response:
        return _error(405, f"{request.method} is not allowed on {quote(request.url.path)}")

    @asynccontextmanager
    async def lifespan(app: Starlette):
        follower.start()
        try:
            yield
        finally:
            left = producer.close()
            follower.stop()
            if parts.close is not None:
                parts.close()
            if left:
                raise RuntimeError(f"{left} collected events were not delivered before shutdown")

    routes = [
        Route("/v1/collect", collect, methods=["POST"]),
        Route("/v1/collect", preflight, methods=["OPTIONS"]),
        Route("/v1/pixel.gif", pixel, methods=["GET", "HEAD"]),
        Route("/v1/ps.js", script, methods=["GET", "HEAD"]),
        Route("/v1/profiles", profile_by_email, methods=["GET"]),
        Route("/v1/profiles/{identifier:path}", profile, methods=["GET"]),
        Route("/v1/openapi.json", description, methods=["GET"]),
        Route("/ui/", ui_search, methods=["GET"]),
        Route("/ui", to_ui, methods=["GET"]),
        Route("/ui/profiles/{identifier:path}", ui_profile, methods=["GET"]),
        Route("/healthz", healthz, methods=["GET"]),
        Route("/readyz", readyz, methods=["GET"]),
        Route("/metrics", prometheus, methods=["GET"]),
    ]
    app = Starlette(routes=routes, lifespan=lifespan, exception_handlers={404: not_found, 405: not_allowed})
    app.state.producer = producer
    return app


__all__ = ["GIF", "Parts", "create_app", "snippet"]
