"""`profilestream topics create`: every configured topic, idempotently."""

from __future__ import annotations

import argparse

from profilestream.config import Config


def create(config: Config, args: argparse.Namespace) -> int:
    from profilestream.kafka.clients import create_topics

    created = set(create_topics(config))
    for name in config.topics.names().values():
        print(f"{name}: {'created' if name in created else 'exists'}")
    return 0


__all__ = ["create"]
