"""`profilestream run`: the dataflow against the configured brokers."""

from __future__ import annotations

import argparse
import sys

from profilestream.config import Config


def main(config: Config, args: argparse.Namespace) -> int:
    from profilestream.flows import runner

    if args.no_recovery and args.recovery_dir is not None:
        print("profilestream: --no-recovery and --recovery-dir exclude each other", file=sys.stderr)
        return 2
    code: int = runner.run(
        config,
        workers=args.workers,
        processes=args.processes,
        until_idle=args.until_idle,
        recovery_dir=runner.recovery_dir_for(config, args.recovery_dir, args.no_recovery, args.until_idle),
        metrics_port=args.metrics_port,
        logs=True,
        addresses=args.addresses,
        process_id=args.process_id,
    )
    return code


__all__ = ["main"]
