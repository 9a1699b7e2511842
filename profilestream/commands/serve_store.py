"""`profilestream serve-store`: keep the local profile store current by following `profiles`."""

from __future__ import annotations

import argparse

from profilestream.config import Config


def main(config: Config, args: argparse.Namespace) -> int:
    from profilestream import store

    held = store.exclusive(config)  # a store held by another process: one line, before anything else
    print(f"following {config.topics.name('profiles')} into {config.store.path} (Ctrl-C stops)", flush=True)
    store.serve(config, held)
    return 0


__all__ = ["main"]
