"""`profilestream serve`: the HTTP edge (CONTRACT.md "HTTP"; docs/http.md)."""

from __future__ import annotations

import argparse

from profilestream.config import Config


def main(config: Config, args: argparse.Namespace) -> int:
    from profilestream.serve import server

    server.serve(config)
    return 0


__all__ = ["main"]
