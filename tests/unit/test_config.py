"""Configuration: CONTRACT.md defaults, TOML and environment overrides, errors naming the key."""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from profilestream.config import (
    MAX_DURATION_MS,
    SECTIONS,
    TOPIC_ROLES,
    Config,
    ConfigError,
    load_config,
    parse_duration,
)
from profilestream.domain.rules import Rules

# The TOML block of CONTRACT.md "Configuration", verbatim: the defaults must equal it.
CONTRACT_TOML = """
[kafka]
brokers = "127.0.0.1:9092"     # any other key in this table is passed to librdkafka as is (security.protocol, sasl.*, ...)

[topics]                        # names of the topics; partitions used by `topics create`
clickstream = "clickstream"
crm_changes = "crm-changes"
profiles = "profiles"
merges = "profile-merges"
triggers = "triggers"
crm_feed = "crm-feed"
dead_letters = "dead-letters"
partitions = 3

[sessions]
gap = "30m"                     # a device's visit ends after this much event-time inactivity

[triggers]
cart_abandon_after = "60m"
return_visit_after = "7d"

[identity]
blocked_values = ["", "0", "-", "null", "none", "undefined", "anonymous", "unknown", "test"]   # compared case-insensitively
order_match_window = "30d"

[time]
allowed_lateness = "30s"         # events out of order by up to this much give the same results as in order
idle_after = "10s"               # always-on: a partition silent this long stops holding the watermark back
dedup_window = "1d"              # a repeated event_id / change_id within this much event time counts once
max_future = "1h"                # version 2: an event more than this far ahead of the wall clock is dead-lettered ("off": no bound)
"""  # noqa: E501 - verbatim from CONTRACT.md

MIN, HOUR, DAY = 60_000, 3_600_000, 86_400_000


def write(tmp_path: Path, text: str) -> str:
    path = tmp_path / "profilestream.toml"
    path.write_text(textwrap.dedent(text))
    return str(path)


def test_defaults_equal_the_contract(tmp_path):
    defaults = load_config(env={})
    assert defaults == load_config(write(tmp_path, CONTRACT_TOML), env={})
    assert defaults == Config()
    assert defaults.kafka.brokers == "127.0.0.1:9092" and defaults.kafka.extra == {}
    assert defaults.topics.names() == {
        "clickstream": "clickstream",
        "crm_changes": "crm-changes",
        "profiles": "profiles",
        "merges": "profile-merges",
        "triggers": "triggers",
        "crm_feed": "crm-feed",
        "dead_letters": "dead-letters",
    }
    assert defaults.topics.partitions == 3
    assert defaults.sessions.gap == 30 * MIN
    assert (defaults.triggers.cart_abandon_after, defaults.triggers.return_visit_after) == (60 * MIN, 7 * DAY)
    assert defaults.identity.order_match_window == 30 * DAY
    assert defaults.identity.blocked_values == (
        "",
        "0",
        "-",
        "null",
        "none",
        "undefined",
        "anonymous",
        "unknown",
        "test",
    )
    assert (defaults.time.allowed_lateness, defaults.time.idle_after, defaults.time.dedup_window) == (
        30_000,
        10_000,
        DAY,
    )


def test_default_rules_equal_the_domain_defaults():
    assert load_config(env={}).rules() == Rules()


def test_sections_table_lists_every_section():
    assert list(SECTIONS) == [
        "kafka",
        "topics",
        "sessions",
        "triggers",
        "identity",
        "time",
        "run",
        "store",
        "scores",
        "serve",
        "schema_registry",
    ]


def test_contract_v2_sections_have_the_contract_defaults_and_take_the_environment():
    config = load_config(env={"PROFILESTREAM_SERVE_PORT": "9000", "PROFILESTREAM_SCHEMA_REGISTRY_URL": "http://r:8081"})
    assert config.serve.port == 9000
    assert config.serve.cookie_max_age == 400 * 86_400_000
    assert (config.serve.host, config.serve.cookie_name, config.serve.url_key_param) == (
        "127.0.0.1",
        "ps_device",
        "ps_ck",
    )
    assert config.serve.max_body == 1048576
    assert config.schema_registry.url == "http://r:8081"
    with pytest.raises(ConfigError, match=r"serve\.port"):
        load_config(env={"PROFILESTREAM_SERVE_PORT": "eighty"})


def test_toml_overrides(tmp_path):
    config = load_config(
        write(
            tmp_path,
            """
        [kafka]
        brokers = "k1:9092,k2:9092"
        [topics]
        profiles = "shop.profiles"
        partitions = 12
        [sessions]
        gap = "45m"
        [identity]
        blocked_values = [" N/A ", "Guest"]
        [time]
        allowed_lateness = "0s"
        idle_after = "500ms"
    """,
        ),
        env={},
    )
    assert config.kafka.brokers == "k1:9092,k2:9092"
    assert config.topics.profiles == "shop.profiles" and config.topics.name("profiles") == "shop.profiles"
    assert config.topics.partitions == 12
    assert config.topics.clickstream == "clickstream"  # untouched keys keep their default
    assert config.sessions.gap == 45 * MIN
    assert config.time.allowed_lateness == 0 and config.time.idle_after == 500
    rules = config.rules()
    assert rules.blocked_values == frozenset({"n/a", "guest"})
    assert rules.session_gap == 45 * MIN and rules.idle_after == 500
    assert rules.usable(" GUEST ") is None and rules.usable("null") == "null"


def test_environment_wins_over_toml(tmp_path):
    path = write(
        tmp_path,
        """
        [kafka]
        brokers = "from-file:9092"
        [time]
        allowed_lateness = "1m"
        [topics]
        partitions = 2
    """,
    )
    config = load_config(
        path,
        env={
            "PROFILESTREAM_KAFKA_BROKERS": "from-env:9092",
            "PROFILESTREAM_TIME_ALLOWED_LATENESS": "5s",
            "PROFILESTREAM_TOPICS_PARTITIONS": " 7 ",
            "PROFILESTREAM_TRIGGERS_RETURN_VISIT_AFTER": "2d",
            "PROFILESTREAM_CONFIG": "/somewhere/else.toml",  # not a section: left to the CLI
            "HOME": "/root",
        },
    )
    assert config.kafka.brokers == "from-env:9092"
    assert config.time.allowed_lateness == 5_000
    assert config.topics.partitions == 7
    assert config.triggers.return_visit_after == 2 * DAY


def test_environment_defaults_to_os_environ(monkeypatch):
    monkeypatch.setenv("PROFILESTREAM_SESSIONS_GAP", "10m")
    assert load_config().sessions.gap == 10 * MIN
    assert load_config(env={}).sessions.gap == 30 * MIN


@pytest.mark.parametrize(
    "text, expected",
    [
        ('["", "N/A", "none"]', ("", "N/A", "none")),
        ("n/a, Guest ,", ("n/a", "Guest", "")),
        ("single", ("single",)),
        ("", ()),
    ],
)
def test_blocked_values_from_environment(text, expected):
    config = load_config(env={"PROFILESTREAM_IDENTITY_BLOCKED_VALUES": text})
    assert config.identity.blocked_values == expected


def test_kafka_extra_keys_pass_through(tmp_path):
    config = load_config(
        write(
            tmp_path,
            """
        [kafka]
        brokers = "b:9093"
        "security.protocol" = "SASL_SSL"
        sasl.username = "shop"
        "enable.idempotence" = true
        "message.timeout.ms" = 5000
    """,
        ),
        env={"PROFILESTREAM_KAFKA_SASL_MECHANISM": "PLAIN", "PROFILESTREAM_KAFKA_SASL_USERNAME": "env-user"},
    )
    assert config.kafka.extra == {
        "security.protocol": "SASL_SSL",
        "sasl.username": "env-user",
        "sasl.mechanism": "PLAIN",
        "enable.idempotence": "true",
        "message.timeout.ms": "5000",
    }
    assert config.kafka.client_config()["bootstrap.servers"] == "b:9093"
    assert config.kafka.client_config()["sasl.mechanism"] == "PLAIN"


def test_topic_names_by_role():
    topics = load_config(env={"PROFILESTREAM_TOPICS_MERGES": "m"}).topics
    assert {role: topics.name(role) for role in TOPIC_ROLES} == {**topics.names(), "merges": "m"}
    with pytest.raises(KeyError):
        topics.name("partitions")


def test_error_message_example():
    with pytest.raises(ConfigError) as info:
        load_config(env={"PROFILESTREAM_TIME_ALLOWED_LATENESS": "30x"})
    assert info.value.key == "time.allowed_lateness"
    assert str(info.value).startswith('time.allowed_lateness: "30x" is not a duration (use e.g. 90s, 30m, 1h, 7d)')
    assert "PROFILESTREAM_TIME_ALLOWED_LATENESS" in str(info.value)


@pytest.mark.parametrize(
    "toml, key",
    [
        ('[time]\nallowed_lateness = "30x"', "time.allowed_lateness"),
        ('[time]\nallowed_lateness = "-5s"', "time.allowed_lateness"),
        ("[time]\nallowed_lateness = 30", "time.allowed_lateness"),
        ('[time]\ndedup_window = "1 day"', "time.dedup_window"),
        ('[time]\nidle_after = "1.5s"', "time.idle_after"),
        ('[sessions]\ngap = ""', "sessions.gap"),
        ('[triggers]\ncart_abandon_after = "h"', "triggers.cart_abandon_after"),
        ('[identity]\norder_match_window = "30D"', "identity.order_match_window"),
        ("[topics]\npartitions = 0", "topics.partitions"),
        ("[topics]\npartitions = -1", "topics.partitions"),
        ('[topics]\npartitions = "3"', "topics.partitions"),
        ("[topics]\npartitions = true", "topics.partitions"),
        ("[topics]\npartitions = 2.5", "topics.partitions"),
        ("[topics]\nprofiles = 5", "topics.profiles"),
        ('[topics]\nprofiles = "no spaces"', "topics.profiles"),
        ('[topics]\ntriggers = "profiles"', "topics.triggers"),
        ('[identity]\nblocked_values = "none"', "identity.blocked_values"),
        ("[identity]\nblocked_values = [1, 2]", "identity.blocked_values"),
        ('[kafka]\nbrokers = ""', "kafka.brokers"),
        ("[kafka]\nbrokers = 9092", "kafka.brokers"),
        ('[kafka]\n"bootstrap.servers" = "x:1"', "kafka.bootstrap.servers"),
        ('[kafka]\n"debug" = ["a"]', "kafka.debug"),
        ('[time]\nallowed_latenes = "5s"', "time.allowed_latenes"),
        ('[topic]\nprofiles = "p"', "topic"),
        ('time = "5s"', "time"),
    ],
)
def test_bad_toml_names_the_key(tmp_path, toml, key):
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, toml), env={})
    assert info.value.key == key
    assert str(info.value).startswith(f"{key}: ")


@pytest.mark.parametrize(
    "var, value, key",
    [
        ("PROFILESTREAM_TOPICS_PARTITIONS", "three", "topics.partitions"),
        ("PROFILESTREAM_TOPICS_PARTITIONS", "0", "topics.partitions"),
        ("PROFILESTREAM_TIME_IDLE_AFTER", "10", "time.idle_after"),
        ("PROFILESTREAM_SESSIONS_GAP", "-30m", "sessions.gap"),
        ("PROFILESTREAM_IDENTITY_BLOCKED_VALUES", "[1]", "identity.blocked_values"),
        ("PROFILESTREAM_IDENTITY_BLOCKED_VALUES", '["unclosed"', "identity.blocked_values"),
        ("PROFILESTREAM_TIME_BOGUS", "1s", "time.bogus"),
        ("PROFILESTREAM_TOPICS_CLICKSTREAM", "a/b", "topics.clickstream"),
        ("PROFILESTREAM_TOPICS_REPLICATION_FACTOR", "0", "topics.replication_factor"),
        ("PROFILESTREAM_TOPICS_REPLICATION_FACTOR", "three", "topics.replication_factor"),
        ("PROFILESTREAM_KAFKA_NO_SUCH_THING", "1", "kafka.no.such.thing"),
        ("PROFILESTREAM_KAFKA_SECURITY_PROTOCOL", "bogus", "kafka.security.protocol"),
        ("PROFILESTREAM_KAFKA_LINGER_MS", "soon", "kafka.linger.ms"),
    ],
)
def test_bad_environment_names_the_key_and_variable(var, value, key):
    with pytest.raises(ConfigError) as info:
        load_config(env={var: value})
    assert info.value.key == key
    assert str(info.value).startswith(f"{key}: ") and var in str(info.value)


def test_missing_file_names_the_file(tmp_path):
    missing = str(tmp_path / "nope.toml")
    with pytest.raises(ConfigError) as info:
        load_config(missing, env={})
    assert info.value.key == missing and missing in str(info.value)


def test_invalid_toml_names_the_file(tmp_path):
    path = write(tmp_path, "[time\nallowed_lateness = ")
    with pytest.raises(ConfigError) as info:
        load_config(path, env={})
    assert info.value.key == path and "TOML" in str(info.value)


@pytest.mark.parametrize(
    "text, ms",
    [
        ("0s", 0),
        ("500ms", 500),
        ("90s", 90_000),
        ("30m", 30 * MIN),
        ("1h", HOUR),
        ("7d", 7 * DAY),
        (" 2h ", 2 * HOUR),
        ("0ms", 0),
    ],
)
def test_durations(text, ms):
    assert parse_duration(text) == ms


def test_absurd_duration_is_a_configuration_error():
    with pytest.raises(ConfigError, match=r"sessions.gap: .*longest duration accepted \(36500d\)"):
        load_config(env={"PROFILESTREAM_SESSIONS_GAP": "99999999999999999999d"})
    assert parse_duration("36500d") == MAX_DURATION_MS


def test_max_future_default_and_off():
    assert load_config(env={}).rules().max_future == HOUR
    assert load_config(env={"PROFILESTREAM_TIME_MAX_FUTURE": "off"}).rules().max_future is None
    assert load_config(env={"PROFILESTREAM_TIME_MAX_FUTURE": "5m"}).rules().max_future == 5 * MIN
    with pytest.raises(ConfigError, match=r"time\.max_future"):
        load_config(env={"PROFILESTREAM_TIME_MAX_FUTURE": "soon"})


@given(st.integers(min_value=0, max_value=10**9), st.sampled_from(["ms", "s", "m", "h", "d"]))
def test_durations_generated(n, unit):
    factor = {"ms": 1, "s": 1_000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}[unit]
    if n * factor > MAX_DURATION_MS:
        with pytest.raises(ValueError, match="longest duration"):
            parse_duration(f"{n}{unit}")
        with pytest.raises(ConfigError, match=r"time\.dedup_window"):
            load_config(env={"PROFILESTREAM_TIME_DEDUP_WINDOW": f"{n}{unit}"})
        return
    assert parse_duration(f"{n}{unit}") == n * factor
    assert load_config(env={"PROFILESTREAM_TIME_DEDUP_WINDOW": f"{n}{unit}"}).time.dedup_window == n * factor


@given(st.text(max_size=8).filter(lambda s: not re.fullmatch(r"\s*[0-9]+(ms|s|m|h|d)\s*", s)))
def test_non_durations_are_rejected(text):
    with pytest.raises(ValueError):
        parse_duration(text)


def test_config_pickles_for_cluster_children():
    import pickle

    config = load_config(env={"PROFILESTREAM_KAFKA_SASL_MECHANISM": "PLAIN", "PROFILESTREAM_SESSIONS_GAP": "5m"})
    again = pickle.loads(pickle.dumps(config))
    assert again == config and again.kafka.extra == {"sasl.mechanism": "PLAIN"} and again.sessions.gap == 300_000


def test_replication_factor_default_toml_and_environment(tmp_path):
    assert load_config(env={}).topics.replication_factor == 1
    path = write(tmp_path, "[topics]\nreplication_factor = 3\n")
    assert load_config(path, env={}).topics.replication_factor == 3
    env = {"PROFILESTREAM_TOPICS_REPLICATION_FACTOR": "2"}
    assert load_config(path, env=env).topics.replication_factor == 2
    with pytest.raises(ConfigError, match=r"^topics\.replication_factor: must be 1 or more"):
        load_config(write(tmp_path, "[topics]\nreplication_factor = 0\n"), env={})


@pytest.mark.parametrize(
    "toml, key, reason",
    [
        ('"no.such.thing" = 1', "kafka.no.such.thing", 'No such configuration property: "no.such.thing"'),
        ('security.protocol = "bogus"', "kafka.security.protocol", 'Invalid value "bogus"'),
        ('"enable.idempotence" = "maybe"', "kafka.enable.idempotence", "Expected bool value"),
        ('"auto.offset.reset" = "sometime"', "kafka.auto.offset.reset", 'Invalid value "sometime"'),
        ('"linger.ms" = "soon"', "kafka.linger.ms", "Invalid value"),  # librdkafka names its alias
    ],
)
def test_librdkafka_refusals_name_the_key_as_written(tmp_path, toml, key, reason):
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, f'[kafka]\nbrokers = "b:9092"\n{toml}\n'), env={})
    assert info.value.key == key and reason in info.value.message
    assert "(from " not in info.value.message  # from the file, not a variable


def test_accepted_librdkafka_properties_load():
    env = {
        "PROFILESTREAM_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
        "PROFILESTREAM_KAFKA_SASL_MECHANISM": "PLAIN",
        "PROFILESTREAM_KAFKA_SASL_USERNAME": "shop",
        "PROFILESTREAM_KAFKA_SASL_PASSWORD": "secret",
        "PROFILESTREAM_KAFKA_AUTO_OFFSET_RESET": "earliest",
        "PROFILESTREAM_KAFKA_ACKS": "all",
    }
    assert load_config(env=env).kafka.extra["security.protocol"] == "SASL_SSL"


def test_metrics_listen_on_loopback_unless_told():
    assert load_config(env={}).run.metrics_host == "127.0.0.1"
    assert load_config(env={"PROFILESTREAM_RUN_METRICS_HOST": "0.0.0.0"}).run.metrics_host == "0.0.0.0"
