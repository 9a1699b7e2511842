"""`profilestream run`: the dataflow against the configured brokers."""

from __future__ import annotations

import argparse

from profilestream.config import Config


def main(config: Config, args: argparse.Namespace) -> int:
    from profilestream.flows import runner

    code: int = runner.run(
        config,
        workers=args.workers,
        processes=args.processes,
        until_idle=args.until_idle,
        recovery_dir=args.recovery_dir,
        metrics_port=args.metrics_port,
        logs=True,
    )
    return code


__all__ = ["main"]
