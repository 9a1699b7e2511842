"""The OpenAPI 3.1 description served at `/v1/openapi.json`.

Why it is derived from the Avro schemas instead of written out: the event a site posts and the
profile the API answers are the `clickstream` and `profiles` records (CONTRACT.md), so their JSON
Schemas are read off `schemas/*.avsc` (`json_schema`); a field added to a schema appears here
without anyone remembering to, and the generated API tests (schemathesis) probe exactly what the
codec accepts. Only the paths, parameters and status codes are written by hand.
"""

from __future__ import annotations

from typing import Any

from profilestream import __version__
from profilestream.codec import avro
from profilestream.domain.roles import CLICKSTREAM, PROFILES
from profilestream.serve.collector import MAX_EVENTS

_PRIMITIVE: dict[str, dict[str, Any]] = {
    "string": {"type": "string"},
    "boolean": {"type": "boolean"},
    "int": {"type": "integer", "minimum": -(2**31), "maximum": 2**31 - 1},
    "long": {"type": "integer"},
    "float": {"type": "number"},
    "double": {"type": "number"},
    "null": {"type": "null"},
}
_TIME = {"type": "string", "format": "date-time", "description": "ISO-8601 with a zone, e.g. 2026-11-20T10:15:00.123Z"}
EDGE_DEFAULTS = ("event_id", "ts", "device_id")  # the collector fills these in (CONTRACT.md "HTTP")


def json_schema(avro_type: Any, named: dict[str, Any] | None = None, closed: bool = False) -> dict[str, Any]:
    """The JSON Schema of an Avro type in its JSON form (`avro.to_json`); `closed`: records
    take no other fields (as `avro.from_json` rejects unknown ones)."""
    named = {} if named is None else named
    if isinstance(avro_type, str):
        if avro_type in _PRIMITIVE:
            return dict(_PRIMITIVE[avro_type])
        return json_schema(named[avro_type], named, closed)
    if isinstance(avro_type, list):
        return {"anyOf": [json_schema(t, named, closed) for t in avro_type]}
    kind = avro_type["type"]
    if avro_type.get("logicalType") == "timestamp-millis":
        return dict(_TIME)
    if kind == "record":
        named[avro_type["name"]] = avro_type
        named[avro_type["name"].rsplit(".", 1)[-1]] = avro_type
        schema: dict[str, Any] = {
            "type": "object",
            "properties": {f["name"]: _field(f, named, closed) for f in avro_type["fields"]},
            "required": [f["name"] for f in avro_type["fields"] if "default" not in f],
        }
        if closed:
            schema["additionalProperties"] = False
        return schema
    if kind == "enum":
        return {"type": "string", "enum": list(avro_type["symbols"])}
    if kind == "array":
        return {"type": "array", "items": json_schema(avro_type["items"], named, closed)}
    if kind == "map":
        return {"type": "object", "additionalProperties": json_schema(avro_type["values"], named, closed)}
    return json_schema(kind, named, closed)


def _field(f: dict[str, Any], named: dict[str, Any], closed: bool) -> dict[str, Any]:
    schema = json_schema(f["type"], named, closed)
    if f.get("doc"):
        schema["description"] = f["doc"]
    return schema


def event_schema() -> dict[str, Any]:
    """A clickstream event as the collector takes it: the edge's defaults need not be sent."""
    schema = json_schema(avro.schema_for(CLICKSTREAM), closed=True)
    schema["required"] = [name for name in schema["required"] if name not in EDGE_DEFAULTS]
    return schema


def _error(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
    }


def description() -> dict[str, Any]:
    profile = {"$ref": "#/components/schemas/Profile"}
    found = {"description": "the profile", "content": {"application/json": {"schema": profile}}}
    auth: list[dict[str, list[str]]] = [{"bearer": []}]
    unauthorized = _error("serve.api_token is set and the request has no valid Authorization: Bearer token")
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "profilestream serve",
            "version": __version__,
            "description": "The collector for websites and e-mails, the profile API and the single customer view.",
        },
        "paths": {
            "/v1/collect": {
                "post": {
                    "summary": "collect one event or a batch",
                    "operationId": "collect",
                    "requestBody": {
                        "required": True,
                        "content": {
                            "application/json": {"schema": {"$ref": "#/components/schemas/CollectBody"}},
                            "text/plain": {"schema": {"$ref": "#/components/schemas/CollectBody"}},
                        },
                    },
                    "responses": {
                        "202": {
                            "description": "the valid events were handed to the producer",
                            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Accepted"}}},
                        },
                        "400": _error("no event was accepted (each one's reason in `rejected`), or not JSON"),
                        "413": _error("the body is over serve.max_body"),
                    },
                }
            },
            "/v1/pixel.gif": {
                "get": {
                    "summary": "one event as query parameters; always a 1x1 GIF",
                    "operationId": "pixel",
                    "parameters": [
                        {"name": name, "in": "query", "required": False, "schema": {"type": "string"}}
                        for name in ("type", "device_id", "url", "referrer", "product_id", "utm_source")
                    ],
                    "responses": {"200": {"description": "a 1x1 GIF", "content": {"image/gif": {}}}},
                }
            },
            "/v1/profiles/{identifier}": {
                "get": {
                    "summary": "the profile a device id, customer key, customer id or profile id belongs to",
                    "operationId": "profile",
                    "security": auth,
                    "parameters": [
                        {"name": "identifier", "in": "path", "required": True, "schema": {"type": "string"}}
                    ],
                    "responses": {"200": found, "401": unauthorized, "404": _error("no profile holds it")},
                }
            },
            "/v1/profiles": {
                "get": {
                    "summary": "the profile of a clear e-mail address (hashed on arrival, never stored or logged)",
                    "operationId": "profile_by_email",
                    "security": auth,
                    "parameters": [{"name": "email", "in": "query", "required": True, "schema": {"type": "string"}}],
                    "responses": {
                        "200": found,
                        "400": _error("no email parameter"),
                        "401": unauthorized,
                        "404": _error("no profile holds it"),
                    },
                }
            },
            "/healthz": {"get": {"operationId": "healthz", "responses": {"200": {"description": "alive"}}}},
            "/readyz": {
                "get": {
                    "operationId": "readyz",
                    "responses": {
                        "200": {"description": "the broker answers and the store has caught up"},
                        "503": {"description": "not ready, with the reason"},
                    },
                }
            },
        },
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": {
                "Event": event_schema(),
                "CollectBody": {
                    "anyOf": [
                        {"$ref": "#/components/schemas/Event"},
                        {
                            "type": "object",
                            "properties": {
                                "events": {
                                    "type": "array",
                                    "items": {"$ref": "#/components/schemas/Event"},
                                    "minItems": 1,
                                    "maxItems": MAX_EVENTS,
                                }
                            },
                            "required": ["events"],
                            "additionalProperties": False,
                        },
                    ]
                },
                "Accepted": {
                    "type": "object",
                    "properties": {
                        "accepted": {"type": "integer"},
                        "rejected": {
                            "type": "array",
                            "items": {
                                "type": "object",
                                "properties": {"index": {"type": "integer"}, "error": {"type": "string"}},
                            },
                        },
                    },
                    "required": ["accepted", "rejected"],
                },
                "Profile": json_schema(avro.schema_for(PROFILES)),
                "Error": {"type": "object", "properties": {"error": {"type": "string"}}, "required": ["error"]},
            },
        },
    }


__all__ = ["description", "event_schema", "json_schema"]
