"""`profilestream report campaigns`: which campaigns bring real sales, judged by CRM lead status.

Per campaign (source / medium / name, as the UTM parameters gave them), from the live profiles:

* `touched`: profiles that came through the campaign at least once (any touch);
* and, under each attribution model, the profiles attributed to the campaign and how far the CRM
  says they got:
  - **first touch**: a profile belongs to the campaign it first came through (the earliest
    `first_ts` among its campaigns; ties go to the campaign listed first on the profile);
  - **last touch**: to the campaign it last came through (the latest `last_ts`; ties go to the
    one with the later `first_ts`, then to the one listed last);
  - `reached`: profiles attributed; `leads`, `offers`, `sales`: those whose CRM `lead_status` is
    at least `lead`, `offer_created`, `sale`. The funnel is cumulative: the CRM holds a
    customer's current stage, and a sale has passed through the lead and offer stages, so it
    counts in all three. A status outside the funnel (or none) counts in `reached` only. Statuses
    are compared trimmed and case-insensitively, spaces and hyphens read as `_`;
  - `revenue`: the attributed profiles' web revenue (their `revenue`: every purchase, before or
    after the touch).

Profiles without any campaign form the row `(no campaign)`, so each attribution column adds up
to the whole population. The report reads the local profile store (caught up with the `profiles`
topic first, as `profile get` does), so it shows the latest record of every live profile.
"""

from __future__ import annotations

import argparse
import csv
import io
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from profilestream.config import Config

FUNNEL = {"lead": 1, "offer_created": 2, "sale": 3}
NO_CAMPAIGN = ("(no campaign)", None, None)
MODELS = ("first", "last")
MEASURES = ("reached", "leads", "offers", "sales", "revenue")
COLUMNS = ("source", "medium", "name", "touched", *(f"{model}_{measure}" for model in MODELS for measure in MEASURES))


def stage(lead_status: str | None) -> int:
    """0 (none or not in the funnel), 1 lead, 2 offer created, 3 sale."""
    if lead_status is None:
        return 0
    return FUNNEL.get(lead_status.strip().lower().replace(" ", "_").replace("-", "_"), 0)


@dataclass
class Attributed:
    reached: int = 0
    leads: int = 0
    offers: int = 0
    sales: int = 0
    revenue: float = 0.0

    def add(self, level: int, revenue: float) -> None:
        self.reached += 1
        self.leads += level >= 1
        self.offers += level >= 2
        self.sales += level >= 3
        self.revenue += revenue


@dataclass
class CampaignRow:
    source: str | None
    medium: str | None
    name: str | None
    touched: int = 0
    first: Attributed = field(default_factory=Attributed)
    last: Attributed = field(default_factory=Attributed)

    @property
    def key(self) -> tuple[Any, ...]:
        return (self.source, self.medium, self.name)

    def values(self) -> dict[str, Any]:
        out: dict[str, Any] = {"source": self.source, "medium": self.medium, "name": self.name, "touched": self.touched}
        for model in MODELS:
            counts = getattr(self, model)
            for measure in MEASURES:
                out[f"{model}_{measure}"] = getattr(counts, measure)
        return out


def _ms(value: Any) -> int:
    if isinstance(value, int):
        return value
    from profilestream.codec.avro import (
        parse_time,  # the store holds JSON: ISO-8601 strings
    )

    return parse_time(value)


def _text(part: str | None) -> str:
    return "" if part is None else part


def campaign_report(profiles: Iterable[dict[str, Any]]) -> list[CampaignRow]:
    """Rows per campaign, most touched first (then by source, medium, name); `(no campaign)` last."""
    rows: dict[tuple[Any, ...], CampaignRow] = {}

    def row(key: tuple[Any, ...]) -> CampaignRow:
        found = rows.get(key)
        if found is None:
            found = rows[key] = CampaignRow(*key)
        return found

    for profile in profiles:
        level = stage(profile.get("lead_status"))
        revenue = float(profile.get("revenue") or 0.0)
        touches = [
            (c.get("source"), c.get("medium"), c.get("name"), _ms(c["first_ts"]), _ms(c["last_ts"]))
            for c in profile.get("campaigns") or []
        ]
        if not touches:
            none = row(NO_CAMPAIGN)
            none.first.add(level, revenue)
            none.last.add(level, revenue)
            continue
        for key in {t[:3] for t in touches}:
            row(key).touched += 1
        first = min(enumerate(touches), key=lambda it: (it[1][3], it[0]))[1]
        last = max(enumerate(touches), key=lambda it: (it[1][4], it[1][3], it[0]))[1]
        row(first[:3]).first.add(level, revenue)
        row(last[:3]).last.add(level, revenue)
    ordered = sorted(
        (r for k, r in rows.items() if k != NO_CAMPAIGN), key=lambda r: (-r.touched, tuple(_text(p) for p in r.key))
    )
    if NO_CAMPAIGN in rows:
        ordered.append(rows[NO_CAMPAIGN])
    return ordered


def totals(rows: list[CampaignRow]) -> CampaignRow:
    """Every attribution column summed (each adds up to the profiles counted); `touched` is not
    additive (a profile touches several campaigns) and is left at 0."""
    total = CampaignRow("total", None, None)
    for r in rows:
        for model in MODELS:
            mine, theirs = getattr(total, model), getattr(r, model)
            for measure in MEASURES:
                setattr(mine, measure, getattr(mine, measure) + getattr(theirs, measure))
    return total


# --- output -----------------------------------------------------------------------------------


def to_csv(rows: list[CampaignRow]) -> str:
    """One line per campaign, the columns of `COLUMNS`; missing UTM parts are empty; revenue with
    two decimals."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(COLUMNS)
    for r in rows:
        values = r.values()
        writer.writerow([_cell(values[c], c) for c in COLUMNS])
    return out.getvalue()


def _cell(value: Any, column: str) -> str:
    if value is None:
        return ""
    if column.endswith("revenue"):
        return f"{value:.2f}"
    return str(value)


def to_table(rows: list[CampaignRow]) -> str:
    """A fixed-width table: the campaign, `touched`, then first touch and last touch side by side,
    and a total line."""
    if not rows:
        return "no profiles in the store"
    body = [r.values() for r in rows]
    total = totals(rows).values()
    total["touched"] = None
    labels = {
        "source": "source",
        "medium": "medium",
        "name": "name",
        "touched": "touched",
        **{f"{m}_{x}": x for m in MODELS for x in MEASURES},
    }

    def show(values: dict[str, Any], column: str) -> str:
        value = values[column]
        if value is None:
            return "" if column == "touched" else "-"
        return f"{value:,.2f}" if column.endswith("revenue") else f"{value:,}" if isinstance(value, int) else str(value)

    cells = [[show(v, c) for c in COLUMNS] for v in [*body, total]]
    widths = [max(len(labels[c]), *(len(line[i]) for line in cells)) for i, c in enumerate(COLUMNS)]
    text_columns = {"source", "medium", "name"}

    def line(values: list[str]) -> str:
        parts = [
            v.ljust(w) if c in text_columns else v.rjust(w) for v, w, c in zip(values, widths, COLUMNS, strict=True)
        ]
        head = "  ".join(parts[:4])
        first = "  ".join(parts[4 : 4 + len(MEASURES)])
        last = "  ".join(parts[4 + len(MEASURES) :])
        return f"{head} | {first} | {last}".rstrip()

    head_width = sum(widths[:4]) + 2 * 3
    group_width = [
        sum(widths[4 : 4 + len(MEASURES)]) + 2 * (len(MEASURES) - 1),
        sum(widths[4 + len(MEASURES) :]) + 2 * (len(MEASURES) - 1),
    ]
    groups = f"{'':{head_width}} | {'first touch':^{group_width[0]}} | {'last touch':^{group_width[1]}}".rstrip()
    header = line([labels[c] for c in COLUMNS])
    rule = "-" * len(header)
    lines = [groups, header, rule, *(line(c) for c in cells[:-1]), rule, line(cells[-1])]
    return "\n".join(lines)


def main(config: Config, args: argparse.Namespace) -> int:
    """`profilestream report campaigns [--format table|csv]`, from the local profile store."""
    from profilestream import store

    rows = campaign_report(store.all_profiles(config))
    if args.format == "csv":
        sys.stdout.write(to_csv(rows))
    else:
        print(to_table(rows))
    return 0


__all__ = ["COLUMNS", "CampaignRow", "campaign_report", "main", "stage", "to_csv", "to_table", "totals"]
