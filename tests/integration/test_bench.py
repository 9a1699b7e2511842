"""Smoke test of `profilestream bench`: it runs end to end on a tiny shop and writes every figure.

No timing is asserted here (timing lives in the benchmark only); only that the figures exist.
"""

from __future__ import annotations

import json

import pytest

from profilestream.cli import main


@pytest.mark.broker
def test_bench_writes_every_figure(tmp_path, monkeypatch, capsys):
    for name in [n for n in __import__("os").environ if n.startswith("PROFILESTREAM_")]:
        monkeypatch.delenv(name)
    out = tmp_path / "bench.json"
    assert main(["bench", "--events", "2000", "--skip-latency", "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    for key in (
        "date",
        "machine",
        "workload",
        "ceiling",
        "dataflow_1p",
        "dataflow_2p",
        "ratio_1p_to_ceiling",
        "scale_2p_over_1p",
        "same_trigger_ids_1p_2p",
        "latency",
        "memory",
        "targets",
    ):
        assert key in result, key
    assert result["workload"]["events"] == 2000
    assert result["same_trigger_ids_1p_2p"] is True
    for key in ("eps", "read_only_eps"):
        assert result["ceiling"][key] > 0
    for run in ("dataflow_1p", "dataflow_2p"):
        assert result[run]["eps"] > 0 and result[run]["peak_rss_mb"] > 0 and result[run]["triggers"] > 0
    assert result["latency"] is None  # skipped
    sizes = result["memory"]["state"]
    assert len(sizes) == 2 and all(s["profiles"] > 0 and s["bytes_per_profile"] > 0 for s in sizes)
    assert set(result["targets"]) == {
        "1p_at_least_half_the_ceiling",
        "2p_at_least_1.6x_1p",
        "p99_under_100ms",
        "state_linear_in_profiles",
    }
    assert "ratio to ceiling" in capsys.readouterr().out


def test_latency_rates_are_parsed_and_checked():
    import argparse

    from profilestream.devtools.bench import _rates

    assert _rates("5000, 10000") == [5000.0, 10000.0]
    for bad in ("fast", "0", "-5", ""):
        with pytest.raises(argparse.ArgumentTypeError):
            _rates(bad)
