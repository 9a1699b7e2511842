"""API tests generated from serve's own OpenAPI description (schemathesis): whatever it sends,
the edge answers without a 5xx, with a status code and a body the description names."""

from __future__ import annotations

import tempfile
from pathlib import Path

import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import content_type_conformance, response_schema_conformance

from profilestream.config import Config
from profilestream.serve.app import Parts, create_app
from profilestream.serve.collector import Collector
from profilestream.store import ProfileStore
from support.serve import ListProducer, StillFollower, profile

_config = Config()
_store = ProfileStore(Path(tempfile.mkdtemp(prefix="ps-serve-generated-")) / "store")
_store.apply("p-1", profile("p-1", device_ids=["dev-1"], customer_id="C-1"), 0, 0)
_follower = StillFollower(_config, _store)
_follower.caught_up.set()
_follower.broker_ok = True
APP = create_app(Parts(Collector(_config.rules(), "ps_ck"), ListProducer(), _follower, _config.serve))
schema = schemathesis.openapi.from_asgi("/v1/openapi.json", APP)
# valid requests and invalid ones (wrong types, missing fields, out-of-range values) alike
schema.config.generation.update(modes=list(schemathesis.GenerationMode), deterministic=True, database="none")


@schema.parametrize()
@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
def test_no_server_error_and_answers_as_described(case):
    response = case.call()
    checks = [not_a_server_error, content_type_conformance]
    if response.status_code < 400:  # a refusal's body is Error, not the operation's answer
        checks.append(response_schema_conformance)
    case.validate_response(response, checks=checks)
