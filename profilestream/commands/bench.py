"""`profilestream bench`: the reference benchmark on the embedded broker (`devtools.bench`)."""

from __future__ import annotations

import argparse

from profilestream.config import Config


def main(config: Config, args: argparse.Namespace) -> int:
    from profilestream.devtools import bench

    return bench.main(config, args)


__all__ = ["main"]
