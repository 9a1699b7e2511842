"""The Confluent wire format with a Schema Registry (CONTRACT "Wire format"), on the client's own
`mock://` registry: framed, raw and newer-schema inputs decoded; outputs framed, under
`<topic>-value`, and readable by confluent-kafka's `AvroDeserializer`; an unknown schema id is a
dead letter with a reason; a registry that does not answer at start is exit 2 naming the key."""

from __future__ import annotations

import base64
import copy
import dataclasses
import json
import pickle
import socket
import uuid
from datetime import datetime, timedelta

import pytest
from confluent_kafka.schema_registry.avro import AvroDeserializer, AvroSerializer
from confluent_kafka.serialization import MessageField, SerializationContext
from hypothesis import given, settings
from hypothesis import strategies as st

from profilestream import cli
from profilestream.codec import avro, registry
from profilestream.codec.times import EPOCH
from profilestream.config import Config, ConfigError
from profilestream.devtools.sample import ShopSpec, generate
from profilestream.domain.outputs import DEAD_LETTERS, Output
from profilestream.domain.roles import CLICKSTREAM, CRM_CHANGES, OUTPUT_ROLES, TOPIC_ROLES
from profilestream.domain.rules import Rules
from profilestream.flows.decode import decode_batch
from profilestream.flows.encode import encode_batch
from profilestream.kafka.source import Raw
from support.flowkit import run_flow
from support.schemas import avsc

RULES = Rules()
NOW = 1_795_169_700_000 + 3_600_000  # an hour after the records' ts: none is in the future
CLICK = {"event_id": "e-1", "ts": 1_795_169_700_000, "device_id": "d-1", "type": "add_to_cart", "product_id": "p-1"}
CHANGE = {"change_id": "c-1", "ts": 1_795_169_700_000, "customer_id": "C1", "op": "upsert", "customer_key": "k1"}
TOPICS = {"clickstream": "clickstream", "crm_changes": "crm-changes"}


def _config(url: str) -> Config:
    config = Config()
    return dataclasses.replace(config, schema_registry=dataclasses.replace(config.schema_registry, url=url))


@pytest.fixture
def url() -> str:
    return f"mock://{uuid.uuid4().hex}"  # a registry of its own per test (the mock lives in its client)


@pytest.fixture
def wire(url: str) -> registry.Wire:
    found = registry.wire_for(_config(url))
    assert found is not None
    return found


def _raw(role: str, value: bytes | None, offset: int = 0) -> Raw:
    return Raw(role, TOPICS[role], 0, offset, b"k", value, CLICK["ts"])


def _decoded(batch: list[Raw], wire: registry.Wire | None) -> tuple[list, list[dict]]:
    out = decode_batch(RULES, batch, NOW, wire)  # type: ignore[arg-type]
    events = [event for _, event in out[-1]] if out and isinstance(out[-1], list) else []
    letters = [o.value for o in out if isinstance(o, Output)]
    return events, letters


def _record(role: str, fields: dict) -> dict:
    return avro.from_json(role, {**fields, "ts": avro.format_time(fields["ts"])})


def _newer_click_schema() -> dict:
    """clickstream's schema as a producer that added an optional field registers it."""
    schema = copy.deepcopy(avsc(avro.SCHEMA_FILES[CLICKSTREAM]))
    schema["fields"].append({"name": "consent_banner", "type": ["null", "string"], "default": None})
    return schema


# --- the rule that tells framed from raw ------------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(st.text(min_size=1, max_size=40).filter(lambda s: s.strip()), st.sampled_from([CLICKSTREAM, CRM_CHANGES]))
def test_no_raw_input_the_product_accepts_starts_with_byte_0(first_id, role):
    """Why a value starting with byte 0 can be taken as framed: both input schemas begin with a
    required, non-blank id string, whose Avro length (zigzag) is never 0."""
    fields = dict(CLICK, event_id=first_id) if role == CLICKSTREAM else dict(CHANGE, change_id=first_id)
    data = avro.encode(role, _record(role, fields))
    assert data[0] != 0
    avro.decode_input(role, data, RULES, NOW)  # and it is accepted


def test_a_raw_record_starting_with_byte_0_is_refused_anyway():
    data = avro.encode(CLICKSTREAM, _record(CLICKSTREAM, dict(CLICK, event_id="")))
    assert data[0] == 0
    with pytest.raises(avro.Rejected, match="event_id"):
        avro.decode_input(CLICKSTREAM, data, RULES, NOW)


# --- inputs ---------------------------------------------------------------------------------------


def test_framed_raw_and_newer_schema_inputs_are_all_decoded(wire, url):
    ours = wire.register((CLICKSTREAM, CRM_CHANGES))
    click, change = _record(CLICKSTREAM, CLICK), _record(CRM_CHANGES, CHANGE)
    newer = AvroSerializer(  # a third-party producer, registering its newer schema under clickstream-value
        registry.client(url), json.dumps(_newer_click_schema()), conf={"auto.register.schemas": True}
    )
    newer_value = newer(
        {**click, "consent_banner": "accepted"}, SerializationContext("clickstream", MessageField.VALUE)
    )
    assert newer_value[0] == 0 and registry.schema_id(newer_value) not in ours.values()
    batch = [
        _raw(CLICKSTREAM, registry.frame(ours[CLICKSTREAM], avro.encode(CLICKSTREAM, click))),
        _raw(CLICKSTREAM, avro.encode(CLICKSTREAM, click), 1),
        _raw(CLICKSTREAM, newer_value, 2),
        _raw(CRM_CHANGES, wire.encode(CRM_CHANGES, change)),
        _raw(CRM_CHANGES, avro.encode(CRM_CHANGES, change), 1),
    ]
    events, letters = _decoded(batch, wire)
    assert letters == []
    expected_click = avro.decode_input(CLICKSTREAM, avro.encode(CLICKSTREAM, click), RULES, NOW)
    expected_change = avro.decode_input(CRM_CHANGES, avro.encode(CRM_CHANGES, change), RULES, NOW)
    assert events == [expected_click] * 3 + [expected_change] * 2


def test_framed_with_the_topics_own_schema_takes_the_fast_decoder(wire, monkeypatch):
    """The generated decoder reads a framed value written with our schema (5 bytes stripped);
    fastavro, the general path, is never called for it."""
    value = wire.encode(CLICKSTREAM, _record(CLICKSTREAM, CLICK))
    assert wire.writer(CLICKSTREAM, registry.schema_id(value)).same  # type: ignore[arg-type]

    def general(*args, **kwargs):
        raise AssertionError("the general path read a record the fast decoder takes")

    monkeypatch.setattr(avro, "_read", general)
    events, letters = _decoded([_raw(CLICKSTREAM, value)], wire)
    assert letters == [] and events[0].event_id == "e-1"


def test_sample_shop_inputs_framed_decode_as_raw(wire):
    spec = ShopSpec(events=400)
    raw = [_raw(role, avro.encode(role, avro.from_json(role, rec)), i) for i, (role, rec) in enumerate(generate(spec))]
    framed = [dataclasses.replace(r, value=registry.frame(wire.id_of(r.role), r.value)) for r in raw]  # type: ignore[arg-type]
    now = 2_000_000_000_000
    assert decode_batch(RULES, framed, now, wire) == decode_batch(RULES, raw, now)  # type: ignore[arg-type]


def test_an_unknown_schema_id_is_a_dead_letter_with_the_reason(wire):
    value = registry.frame(4242, avro.encode(CLICKSTREAM, _record(CLICKSTREAM, CLICK)))
    events, letters = _decoded([_raw(CLICKSTREAM, value)], wire)
    assert events == []
    [letter] = letters
    assert "schema id 4242" in letter["error"] and "not in the registry" in letter["error"]
    assert base64.b64decode(letter["value"]) == value  # the original bytes, header and all


def test_a_schema_id_of_another_topic_that_cannot_be_resolved_is_a_dead_letter(wire):
    crm_id = wire.id_of(CRM_CHANGES)
    value = registry.frame(crm_id, avro.encode(CLICKSTREAM, _record(CLICKSTREAM, CLICK)))
    events, letters = _decoded([_raw(CLICKSTREAM, value)], wire)
    assert events == []
    assert f"schema id {crm_id}" in letters[0]["error"]


def test_a_registry_that_stops_answering_dead_letters_a_new_id_and_asks_again():
    wire = registry.Wire(f"http://127.0.0.1:{_closed_port()}", TOPICS)
    value = registry.frame(3, avro.encode(CLICKSTREAM, _record(CLICKSTREAM, CLICK)))
    _, letters = _decoded([_raw(CLICKSTREAM, value)], wire)
    assert "did not answer for schema id 3" in letters[0]["error"]
    assert wire._unknown == {}  # not kept as unknown: the registry may be back for the next record


def test_without_a_registry_a_framed_value_is_dead_lettered_saying_why():
    value = registry.frame(12, avro.encode(CLICKSTREAM, _record(CLICKSTREAM, CLICK)))
    events, letters = _decoded([_raw(CLICKSTREAM, value)], None)
    assert events == []
    assert "schema id 12; is schema_registry.url set?" in letters[0]["error"]


# --- outputs -------------------------------------------------------------------------------------


def _plain(value):
    """An AvroDeserializer's record with datetimes as epoch ms, as the product's records hold them."""
    if isinstance(value, datetime):
        return (value - EPOCH) // timedelta(milliseconds=1)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def test_outputs_are_framed_under_topic_value_and_read_by_avro_deserializer(wire, url):
    events = [avro.to_event(role, avro.from_json(role, rec), RULES) for role, rec in generate(ShopSpec(events=600))]
    outputs = [o for o in run_flow(events).outputs if o.value is not None]
    assert {o.topic for o in outputs} >= {"profiles", "merges", "triggers", "crm_feed"}
    names = {role: Config().topics.name(role) for role in OUTPUT_ROLES}
    letter = avro.output_dead_letter("profiles", "p-1", "a reason", NOW)
    outputs.append(Output(DEAD_LETTERS, "", letter))
    messages = encode_batch(names, outputs, wire=wire)
    client = registry.client(url)
    deserializer = AvroDeserializer(client)
    for output, message in zip(outputs, messages, strict=True):
        topic = names[output.topic]
        assert message.topic == topic
        found = registry.schema_id(message.value)
        assert found == client.get_latest_version(registry.subject(topic)).schema_id
        read = deserializer(message.value, SerializationContext(topic, MessageField.VALUE))
        assert _plain(read) == output.value
        assert wire.decode(output.topic, message.value) == output.value  # and by `consume`
        assert registry.decoder(_config(url))(output.topic, message.value) == output.value


def test_registered_schemas_are_the_repositorys(wire, url):
    ids = wire.register()
    client = registry.client(url)
    for role in TOPIC_ROLES:
        topic = Config().topics.name(role)
        latest = client.get_latest_version(f"{topic}-value")
        assert latest.schema_id == ids[role]
        assert json.loads(latest.schema.schema_str) == avsc(avro.SCHEMA_FILES[role])
    assert wire.register() == ids  # registering again changes nothing


def test_no_registry_configured_means_no_framing():
    assert registry.wire_for(Config()) is None
    assert (registry.encoder(Config()), registry.decoder(Config())) == (avro.encode, avro.decode)
    names = {role: Config().topics.name(role) for role in OUTPUT_ROLES}
    letter = avro.output_dead_letter("profiles", "p-1", "a reason", NOW)
    [message] = encode_batch(names, [Output(DEAD_LETTERS, "", letter)])
    assert message.value == avro.encode(DEAD_LETTERS, letter)


def test_a_wire_pickles_as_its_url_and_topics(wire):
    wire.register((CLICKSTREAM,))
    copied = pickle.loads(pickle.dumps(wire))
    assert (copied.url, copied.topics) == (wire.url, wire.topics)
    value = wire.encode(CLICKSTREAM, _record(CLICKSTREAM, CLICK))
    assert copied.decode_input(CLICKSTREAM, value, RULES, NOW).event_id == "e-1"


# --- start -------------------------------------------------------------------------------------


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_registry_that_does_not_answer_at_start_is_a_configuration_error_naming_the_key():
    wire = registry.Wire(f"http://127.0.0.1:{_closed_port()}", {r: Config().topics.name(r) for r in TOPIC_ROLES})
    with pytest.raises(ConfigError) as caught:
        wire.register()
    assert caught.value.key == "schema_registry.url"
    assert "did not register the clickstream schema under subject 'clickstream-value'" in str(caught.value)


def test_not_a_url_is_a_configuration_error_naming_the_key():
    with pytest.raises(ConfigError, match=r"schema_registry\.url: 'registry:8081' is not a registry URL"):
        registry.client("registry:8081")


def test_produce_exits_2_naming_the_key_when_the_registry_does_not_answer(tmp_path, capsys, monkeypatch):
    """Before a line is read or a broker asked (none runs here)."""
    lines = tmp_path / "clicks.jsonl"
    lines.write_text(json.dumps({**CLICK, "ts": avro.format_time(CLICK["ts"])}) + "\n")
    monkeypatch.setenv("PROFILESTREAM_SCHEMA_REGISTRY_URL", f"http://127.0.0.1:{_closed_port()}")
    monkeypatch.setenv("PROFILESTREAM_KAFKA_BROKERS", f"127.0.0.1:{_closed_port()}")
    code = cli.main(["produce", "--topic", "clickstream", str(lines)])
    err = capsys.readouterr().err
    assert code == 2
    assert "configuration error: schema_registry.url:" in err and "clickstream-value" in err
