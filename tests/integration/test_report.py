"""`profilestream report campaigns`: counts on a hand-made scenario, the funnel and attribution
rules, the table and CSV forms, the demo's sample shop, and the command against the broker."""

from __future__ import annotations

import csv
import io

import pytest

from profilestream import cli
from profilestream.codec import avro
from profilestream.codec.validation import to_event
from profilestream.commands import report
from profilestream.devtools.sample import ShopSpec, generate
from profilestream.domain.events import Campaign
from profilestream.domain.rules import Rules
from support.e2e import produce, run
from support.scenario import click, crm, run_engine

GOOGLE = Campaign("google", "cpc", "spring")
NEWSLETTER = Campaign("newsletter", "email", "nl-1")
FACEBOOK = Campaign("facebook", "social")  # no name
PARTNER = Campaign("partner", "affiliate", "x")


def scenario_events() -> list:
    return [
        # d1 (C1, sale, 50.0): google first, the newsletter last
        crm(0, "C1", customer_key="k1", lead_status="sale"),
        click(1, "d1", campaign=GOOGLE),
        click(100, "d1", campaign=NEWSLETTER, customer_key="k1"),
        click(101, "d1", "purchase", order_id="o1", revenue=50.0),
        # d2 (C2, offer created): google only
        crm(0, "C2", customer_key="k2", lead_status="offer_created"),
        click(10, "d2", "login", campaign=GOOGLE, customer_key="k2"),
        # d3 (C3, lead): facebook first, google last
        crm(0, "C3", customer_key="k3", lead_status="Lead"),
        click(20, "d3", campaign=FACEBOOK),
        click(30, "d3", "login", campaign=GOOGLE, customer_key="k3"),
        # d4: anonymous newsletter reader (the newsletter's first touch, no lead)
        click(40, "d4", campaign=NEWSLETTER),
        # d5 (C5, " Sale "): no campaign, bought for 20.0; C6: CRM only, a lead
        crm(0, "C5", customer_key="k5", lead_status=" Sale "),
        click(50, "d5", "purchase", order_id="o5", revenue=20.0, customer_key="k5"),
        crm(0, "C6", lead_status="lead"),
        # d7 (C7): a status outside the funnel counts as reached only
        crm(0, "C7", customer_key="k7", lead_status="churned"),
        click(60, "d7", "login", campaign=PARTNER, customer_key="k7"),
    ]


EXPECTED = {  # (source, medium, name): touched, first (reached, leads, offers, sales, revenue), last (...)
    ("google", "cpc", "spring"): (3, (2, 2, 2, 1, 50.0), (2, 2, 1, 0, 0.0)),
    ("newsletter", "email", "nl-1"): (2, (1, 0, 0, 0, 0.0), (2, 1, 1, 1, 50.0)),
    ("facebook", "social", None): (1, (1, 1, 0, 0, 0.0), (0, 0, 0, 0, 0.0)),
    ("partner", "affiliate", "x"): (1, (1, 0, 0, 0, 0.0), (1, 0, 0, 0, 0.0)),
    ("(no campaign)", None, None): (0, (2, 2, 1, 1, 20.0), (2, 2, 1, 1, 20.0)),
}


def summary(rows: list[report.CampaignRow]) -> dict:
    def counts(a: report.Attributed) -> tuple:
        return (a.reached, a.leads, a.offers, a.sales, a.revenue)

    return {r.key: (r.touched, counts(r.first), counts(r.last)) for r in rows}


def test_counts_on_a_hand_made_scenario():
    res = run_engine(scenario_events())
    assert len(res.profiles) == 7
    rows = report.campaign_report(res.profiles.values())
    assert summary(rows) == EXPECTED
    # most touched first, ties by name; the profiles without a campaign last
    assert [r.key[0] for r in rows] == ["google", "newsletter", "facebook", "partner", "(no campaign)"]
    total = report.totals(rows)
    assert (total.first.reached, total.last.reached) == (7, 7)  # every profile once per model
    assert total.first.revenue == total.last.revenue == 70.0


def test_the_report_reads_store_json_as_well_as_records():
    res = run_engine(scenario_events())
    as_json = [avro.to_json("profiles", p) for p in res.profiles.values()]
    assert summary(report.campaign_report(as_json)) == EXPECTED


@pytest.mark.parametrize(
    "status, level",
    [
        (None, 0),
        ("lead", 1),
        ("LEAD", 1),
        ("offer_created", 2),
        ("Offer Created", 2),
        ("offer-created", 2),
        (" sale ", 3),
        ("customer", 0),
        ("", 0),
    ],
)
def test_funnel_stages(status, level):
    assert report.stage(status) == level


def test_attribution_ties():
    profile = {
        "lead_status": "sale",
        "revenue": 1.0,
        "campaigns": [
            {"source": "a", "medium": None, "name": None, "first_ts": 5, "last_ts": 9},
            {"source": "b", "medium": None, "name": None, "first_ts": 5, "last_ts": 9},
        ],
    }
    rows = {r.key[0]: r for r in report.campaign_report([profile])}
    assert rows["a"].first.sales == 1 and rows["b"].first.sales == 0  # listed first
    assert rows["b"].last.sales == 1 and rows["a"].last.sales == 0  # listed last
    assert report.campaign_report([]) == [] and report.to_table([]) == "no profiles in the store"


def test_csv_and_table():
    rows = report.campaign_report(run_engine(scenario_events()).profiles.values())
    lines = list(csv.reader(io.StringIO(report.to_csv(rows))))
    assert (
        lines[0]
        == list(report.COLUMNS)
        == [
            "source",
            "medium",
            "name",
            "touched",
            "first_reached",
            "first_leads",
            "first_offers",
            "first_sales",
            "first_revenue",
            "last_reached",
            "last_leads",
            "last_offers",
            "last_sales",
            "last_revenue",
        ]
    )
    assert lines[1] == ["google", "cpc", "spring", "3", "2", "2", "2", "1", "50.00", "2", "2", "1", "0", "0.00"]
    assert lines[3] == ["facebook", "social", "", "1", "1", "1", "0", "0", "0.00", "0", "0", "0", "0", "0.00"]
    table = report.to_table(rows).splitlines()
    assert "first touch" in table[0] and "last touch" in table[0] and table[0].index("first") < table[0].index("last")
    assert (
        table[1].split()
        == ["source", "medium", "name", "touched", "|", *["reached", "leads", "offers", "sales", "revenue", "|"] * 2][
            :-1
        ]
    )
    assert table[3].split() == [
        "google",
        "cpc",
        "spring",
        "3",
        "|",
        "2",
        "2",
        "2",
        "1",
        "50.00",
        "|",
        "2",
        "2",
        "1",
        "0",
        "0.00",
    ]
    assert table[5].split()[:3] == ["facebook", "social", "-"]
    assert table[-1].split() == ["total", "-", "-", "|", "7", "5", "3", "2", "70.00", "|", "7", "5", "3", "2", "70.00"]


def _sample_profiles(events: int) -> list[dict]:
    rules = Rules()
    batch = [to_event(role, avro.from_json(role, record), rules) for role, record in generate(ShopSpec(events=events))]
    return list(run_engine(batch).profiles.values())


def test_the_demo_shop_shows_every_column():
    rows = report.campaign_report(_sample_profiles(5000))
    total = report.totals(rows)
    for model in ("first", "last"):
        counts = getattr(total, model)
        assert counts.reached > counts.leads > counts.offers > counts.sales > 0 and counts.revenue > 0
        assert any(getattr(r, model).sales and r.key != report.NO_CAMPAIGN for r in rows)
    assert any(r.first.reached != r.last.reached for r in rows)  # the two models disagree somewhere
    assert len(rows) > 5 and all(r.touched > 0 for r in rows if r.key != report.NO_CAMPAIGN)
    table = report.to_table(rows)
    for column in ("touched", "reached", "leads", "offers", "sales", "revenue", "first touch", "last touch"):
        assert column in table


# --- the command, against the broker ----------------------------------------------------------


def _jsonl(events: list) -> tuple[list[dict], list[dict]]:
    from support import flowkit

    clicks, changes = [], []
    for e in events:
        record = avro.to_json("clickstream" if hasattr(e, "device_id") else "crm_changes", flowkit.record(e))
        (clicks if hasattr(e, "device_id") else changes).append(record)
    return clicks, changes


@pytest.mark.broker
def test_report_campaigns_command(config_path, tmp_path, capsys):
    clicks, changes = _jsonl(scenario_events())
    produce(config_path, "crm_changes", changes, tmp_path)
    produce(config_path, "clickstream", clicks, tmp_path)
    run(config_path)
    capsys.readouterr()
    assert cli.main(["report", "campaigns", "--format", "csv", "--config", str(config_path)]) == 0
    out = capsys.readouterr().out
    parsed = {tuple(line[:3]): line[3:] for line in list(csv.reader(io.StringIO(out)))[1:]}
    expected = {
        tuple("" if p is None else p for p in key): [
            str(touched),
            *map(str, first[:4]),
            f"{first[4]:.2f}",
            *map(str, last[:4]),
            f"{last[4]:.2f}",
        ]
        for key, (touched, first, last) in EXPECTED.items()
    }
    assert parsed == expected
    assert cli.main(["report", "campaigns", "--config", str(config_path)]) == 0
    table = capsys.readouterr().out
    assert "first touch" in table and table.splitlines()[-1].split()[0] == "total"
