"""`profilestream profile get`: the profile an identifier belongs to, from the local store."""

from __future__ import annotations

import argparse
import json
import sys

from profilestream.config import Config


def get(config: Config, args: argparse.Namespace) -> int:
    from profilestream import store

    profile = store.get(config, args.identifier)
    if profile is None:
        print(
            f"profilestream: no profile for {args.identifier!r} "
            "(not a known device id, customer key, customer id or profile id)",
            file=sys.stderr,
        )
        return 1
    print(json.dumps(profile, indent=2, ensure_ascii=False))
    return 0


__all__ = ["get"]
