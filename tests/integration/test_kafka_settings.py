"""`[kafka]` settings checked at start, `topics.replication_factor`, and `topics create` errors."""

from __future__ import annotations

from concurrent.futures import Future

import pytest
from confluent_kafka import KafkaError, KafkaException

from profilestream import cli
from profilestream.kafka import clients


def run_cli(capsys, *argv) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("command", [["topics", "create"], ["consume", "--topic", "triggers", "--until-idle"]])
def test_an_unknown_kafka_property_from_the_environment_exits_2_naming_key_and_variable(
    capsys, config_path, monkeypatch, command
):
    monkeypatch.setenv("PROFILESTREAM_KAFKA_NO_SUCH_THING", "1")
    code, out, err = run_cli(capsys, *command, "--config", str(config_path))
    assert code == 2 and out == ""
    assert err.splitlines() == [
        'profilestream: configuration error: kafka.no.such.thing: No such configuration property: "no.such.thing" '
        "(from PROFILESTREAM_KAFKA_NO_SUCH_THING)"
    ]


def test_a_bad_kafka_value_in_the_file_exits_2_naming_the_key(capsys, config_path):
    config_path.write_text(
        config_path.read_text(encoding="utf-8").replace("[topics]", 'security.protocol = "bogus"\n\n[topics]'),
        encoding="utf-8",
    )
    code, _, err = run_cli(capsys, "topics", "create", "--config", str(config_path))
    assert code == 2
    assert err.splitlines() == [
        'profilestream: configuration error: kafka.security.protocol: Invalid value "bogus" for configuration '
        'property "security.protocol"'
    ]


def test_topics_create_uses_the_replication_factor(config, monkeypatch):
    seen: list[tuple[str, int]] = []
    real = clients.create_missing

    def spy(admin, topics, timeout):
        seen.extend((t.topic, t.replication_factor) for t in topics)
        return real(admin, topics, timeout)

    monkeypatch.setattr(clients, "create_missing", spy)
    clients.create_topics(config)
    assert sorted(seen) == sorted((name, 1) for name in config.topics.names().values())


def test_the_replication_factor_reaches_the_broker_request(config, monkeypatch):
    from dataclasses import replace

    config = replace(config, topics=replace(config.topics, replication_factor=3))
    asked: list[int] = []

    class Admin:
        def list_topics(self, topic=None, timeout=None):
            return type("Metadata", (), {"topics": {}})()

        def create_topics(self, topics, **_):
            asked.extend(t.replication_factor for t in topics)
            done: dict[str, Future] = {}
            for t in topics:
                done[t.topic] = Future()
                done[t.topic].set_exception(
                    KafkaException(
                        KafkaError(
                            KafkaError.INVALID_REPLICATION_FACTOR,
                            "Unable to replicate the partition 3 time(s): The target replication factor of 3 "
                            "cannot be reached because only 1 broker(s) are registered.",
                        )
                    )
                )
            return done

    monkeypatch.setattr(clients, "admin_client", lambda _config: Admin())
    with pytest.raises(clients.BrokerError) as refused:
        clients.create_topics(config)
    assert asked == [3] * len(config.topics.names())
    message = str(refused.value)
    assert "\n" not in message and message.startswith("the cluster refused topics.replication_factor = 3 (")
    assert "only 1 broker(s)" in message and config.topics.clickstream in message


def test_a_refused_replication_factor_is_one_line_and_exit_1(capsys, config_path, monkeypatch):
    class Admin:
        def list_topics(self, topic=None, timeout=None):
            return type("Metadata", (), {"topics": {}})()

        def create_topics(self, topics, **_):
            done: dict[str, Future] = {}
            for t in topics:
                done[t.topic] = Future()
                done[t.topic].set_exception(
                    KafkaException(KafkaError(KafkaError.INVALID_REPLICATION_FACTOR, "Replication factor too large"))
                )
            return done

    monkeypatch.setattr(clients, "admin_client", lambda _config: Admin())
    monkeypatch.setenv("PROFILESTREAM_TOPICS_REPLICATION_FACTOR", "5")
    code, out, err = run_cli(capsys, "topics", "create", "--config", str(config_path))
    assert code == 1 and out == ""
    assert len(err.splitlines()) == 1 and "topics.replication_factor = 5" in err


def test_topics_create_without_a_broker_names_it(capsys, tmp_path, monkeypatch):
    for name in ("PROFILESTREAM_KAFKA_BROKERS", "PROFILESTREAM_CONFIG"):
        monkeypatch.delenv(name, raising=False)
    path = tmp_path / "nobroker.toml"
    path.write_text('[kafka]\nbrokers = "127.0.0.1:1"\n\n[run]\nconnect_timeout = "1s"\n', encoding="utf-8")
    code, _, err = run_cli(capsys, "topics", "create", "--config", str(path))
    assert code == 1 and len(err.splitlines()) == 1
    assert "kafka.brokers = 127.0.0.1:1" in err
