"""`profilestream fit-model`: fit the BG/NBD purchase model to the profile store, write it to a file.

Refuses (exit 1, nothing written) data too small or degenerate to fit (fewer than
`bgnbd.MIN_CUSTOMERS` = 10 customers with orders, no repeat purchase at all) and a fit that did
not converge or whose parameters are not finite or above `bgnbd.PARAM_MAX`, with the reason;
a parameter at the model's edge (below `bgnbd.PARAM_WARN_BELOW`) is a warning on stderr.
"""

from __future__ import annotations

import argparse
import sys

from profilestream.codec.times import format_time, parse_time
from profilestream.config import Config

UNIT_DAYS = {"weeks": 7.0, "days": 1.0}


def as_of_time(text: str) -> int:
    """`--as-of`: an ISO-8601 time with a zone, or a date (its midnight UTC) -> epoch ms."""
    return parse_time(text + ("T00:00:00Z" if len(text) == 10 else ""))


def main(config: Config, args: argparse.Namespace) -> int:
    from profilestream import bgnbd, store

    as_of = None
    if args.as_of is not None:
        try:
            as_of = as_of_time(args.as_of)
        except ValueError as exc:
            print(f"profilestream: --as-of: {exc}", file=sys.stderr)
            return 2
    unit_days = UNIT_DAYS[args.unit]
    data = bgnbd.calibration(store.all_profiles(config), as_of, unit_days)
    left_out = ", ".join(f"{n:,} {why.replace('_', ' ')}" for why, n in data.skipped.items() if n)
    if not data.x:
        print(
            "profilestream: no profiles with orders in the store to fit the model to"
            + (f" (left out: {left_out})" if left_out else ""),
            file=sys.stderr,
        )
        return 1
    try:
        fit = bgnbd.fit(data.x, data.t_x, data.T, unit_days)
    except bgnbd.FitError as exc:
        print(
            f"profilestream: cannot fit the BG/NBD model to the profile store: {exc}; no model written"
            + (f" (left out: {left_out})" if left_out else ""),
            file=sys.stderr,
        )
        return 1
    out = args.out or config.scores.model or "bgnbd.json"
    m = fit.model
    m.save(
        out,
        log_likelihood=fit.log_likelihood,
        customers=fit.customers,
        repeat_purchases=sum(data.x),
        as_of=format_time(data.as_of),
    )
    print(
        f"fitted BG/NBD on {fit.customers:,} customers ({sum(data.x):,} repeat purchases) "
        f"as of {format_time(data.as_of)}, time in {args.unit}:"
    )
    print(
        f"  r = {m.r:.4f}  alpha = {m.alpha:.4f}  a = {m.a:.4f}  b = {m.b:.4f}  "
        f"(log-likelihood {fit.log_likelihood:,.2f})"
    )
    for warning in fit.warnings:
        print(f"profilestream: warning: {warning}", file=sys.stderr)
    if left_out:
        print(f"left out: {left_out}")
    print(f'wrote {out}; profiles are scored with it when [scores] model = "{out}"')
    return 0


__all__ = ["UNIT_DAYS", "as_of_time", "main"]
