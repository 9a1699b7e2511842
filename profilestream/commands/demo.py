"""`profilestream demo`: embedded broker + sample shop + dataflow, and what came out."""

from __future__ import annotations

import argparse

from profilestream.config import Config


def main(config: Config, args: argparse.Namespace) -> int:
    from profilestream.devtools import demo

    return demo.main(config)


__all__ = ["main"]
