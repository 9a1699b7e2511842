"""`profilestream topics create`: every configured topic, idempotently."""

from __future__ import annotations

import argparse

from profilestream.config import Config


def create(config: Config, args: argparse.Namespace) -> int:
    from profilestream.kafka.clients import create_topics
    from profilestream.kafka.transfers import ensure_topic as ensure_transfers_topic
    from profilestream.kafka.transfers import transfers_topic

    created = set(create_topics(config))
    for name in config.topics.names().values():
        print(f"{name}: {'created' if name in created else 'exists'}")
    internal = transfers_topic(config)
    existed = _exists(config, internal)
    ensure_transfers_topic(config)
    print(f"{internal}: {'exists' if existed else 'created'} (internal: the transfer loop)")
    return 0


def _exists(config: Config, name: str) -> bool:
    from profilestream.kafka.clients import admin_client, metadata

    return name in metadata(config, admin_client(config)).topics


__all__ = ["create"]
