"""`python -m profilestream.devtools.sample`: write the shop's two files, or time the generator."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from profilestream.devtools.sample.files import write_jsonl
from profilestream.devtools.sample.simulation import generate
from profilestream.devtools.sample.spec import CLICKSTREAM, CRM_CHANGES, ShopSpec


def main(argv: list[str] | None = None) -> int:
    """`python -m profilestream.devtools.sample [--events N] [--seed S] [--out DIR]`: write
    DIR/clickstream.jsonl and DIR/crm-changes.jsonl, or without --out just time the generator."""
    parser = argparse.ArgumentParser(prog="python -m profilestream.devtools.sample", description=main.__doc__)
    parser.add_argument("--events", type=int, default=ShopSpec.events)
    parser.add_argument("--customers", type=int, default=None)
    parser.add_argument("--seed", type=int, default=ShopSpec.seed)
    parser.add_argument("--days", type=float, default=None)
    parser.add_argument("--no-emails", action="store_true")
    parser.add_argument("--bad", type=int, default=0)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    spec = ShopSpec(
        events=args.events,
        customers=args.customers,
        seed=args.seed,
        days=args.days,
        emails=not args.no_emails,
        bad=args.bad,
    )
    began = time.perf_counter()
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        counts = write_jsonl(spec, args.out / "clickstream.jsonl", args.out / "crm-changes.jsonl")
    else:
        counts = {CLICKSTREAM: 0, CRM_CHANGES: 0}
        for role, _ in generate(spec):
            counts[role] += 1
    took = time.perf_counter() - began
    print(
        json.dumps(
            {
                **counts,
                "customers": spec.customer_count,
                "days": round(spec.period_days, 2),
                "seconds": round(took, 2),
                "events_per_second": round(spec.events / took) if took else None,
            }
        )
    )
    return 0


__all__ = ["main"]
