"""The Grafana dashboard (deploy/grafana/profilestream.json) queries only metrics that `run`
serves, with labels they carry: the metric names and labels are read from what the metrics
endpoint writes (`ops.metrics.registry`), filled with one sample of every kind, not from a list
kept beside the dashboard."""

from __future__ import annotations

import json
import re
from pathlib import Path

from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from profilestream.ops import metrics

DASHBOARD = Path(__file__).resolve().parents[2] / "deploy" / "grafana" / "profilestream.json"
METRIC = re.compile(r"\b((?:profilestream|process)_[a-z_]+)\b(?:\{([^}]*)\})?")
BY = re.compile(r"\bby \(([^)]*)\)\s*\(\s*(?:rate|increase)?\(?\s*((?:profilestream|process)_[a-z_]+)")
GRAFANA_LABELS = {"instance", "job"}  # added by Prometheus when it scrapes


def _served() -> dict[str, set[str]]:
    """Every sample name the endpoint writes, with its label names."""
    c = metrics.Counters()
    c.records_in["clickstream"] = 1
    c.events_in[("clickstream", "page_view")] = 1
    c.dead_letters[("clickstream", "field 'ts'")] = 1
    c.records_out["profiles"] = 1
    c.encode_failures["profiles"] = 1
    c.codec_fallbacks[("clickstream", "direct")] = 1
    c.engine.update(
        {
            "clicks.page_view": 1,
            "crm.upsert": 1,
            "late": 1,
            "duplicates": 1,
            "dropped_erased": 1,
            "clamped.revenue": 1,
            "merges.login": 1,
            "triggers.cart_abandoned": 1,
            "triggers_suppressed.cart_abandoned": 1,
        }
    )
    c.partitions["clickstream/0"] = (5, 10)
    c.watermark = 1_790_000_000_000
    text = generate_latest(metrics.registry(c)).decode()
    served: dict[str, set[str]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            served.setdefault(sample.name, set()).update(sample.labels)
    return served


def _queries(node) -> list[str]:
    if isinstance(node, dict):
        found = [node["expr"]] if isinstance(node.get("expr"), str) else []
        query = node.get("query")
        if isinstance(query, dict) and isinstance(query.get("query"), str):
            found.append(query["query"])
        return found + [q for value in node.values() for q in _queries(value)]
    if isinstance(node, list):
        return [q for value in node for q in _queries(value)]
    return []


def test_the_dashboard_parses_and_every_panel_has_a_query_and_its_own_id():
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    panels = dashboard["panels"]
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids))
    shown = [p for p in panels if p["type"] != "row"]
    assert shown and all(p["targets"] and all(t["expr"] for t in p["targets"]) for p in shown)
    assert {v["name"] for v in dashboard["templating"]["list"]} == {"datasource", "instance"}


def test_every_metric_the_dashboard_queries_is_served_with_the_labels_it_uses():
    served = _served()
    queries = _queries(json.loads(DASHBOARD.read_text(encoding="utf-8")))
    assert len(queries) > 20
    used = set()
    for query in queries:
        for name, selector in METRIC.findall(query):
            assert name in served, f"{name} (in {query!r}) is not a metric that run serves"
            used.add(name)
            labels = {part.split("=")[0].strip() for part in selector.split(",") if "=" in part}
            assert labels <= served[name] | GRAFANA_LABELS, f"{query!r}: {name} has no label {labels - served[name]}"
        for grouping, name in BY.findall(query):
            labels = {label.strip() for label in grouping.split(",")}
            assert labels <= served[name] | GRAFANA_LABELS, f"{query!r}: {name} has no label {labels - served[name]}"
    groupings = [found for query in queries for found in BY.findall(query)]
    assert len(groupings) > 15  # the label check above did look at the `by (...)` of the panels
    assert {"profilestream_records_in_total", "profilestream_consumer_lag", "profilestream_snapshots_total"} <= used
