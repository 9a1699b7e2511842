"""The targets the figures are judged by, and the human-readable table."""

from __future__ import annotations

from typing import Any

TARGETS = {
    "ratio_1p_to_ceiling": 0.5,  # one process at least half the ceiling
    "scale_2p_over_1p": 1.6,  # two processes at least 1.6 times one
    "latency_p99_ms": 100.0,  # p99 under 100 ms at half load (lateness 0s)
}


def _targets(result: dict[str, Any]) -> dict[str, Any]:
    met: dict[str, Any] = {
        "1p_at_least_half_the_ceiling": result["ratio_1p_to_ceiling"] >= TARGETS["ratio_1p_to_ceiling"],
        "2p_at_least_1.6x_1p": None
        if result["scale_2p_over_1p"] is None
        else result["scale_2p_over_1p"] >= TARGETS["scale_2p_over_1p"],
        "p99_under_100ms": None,
        "state_linear_in_profiles": None,
    }
    lat = (result.get("latency") or {}).get("lateness_0s")
    if lat and lat["triggers_measured"]:
        met["p99_under_100ms"] = lat["p99_ms"] < TARGETS["latency_p99_ms"]
    mem = result.get("memory")
    if mem and len(mem["state"]) == 2:
        small, big = mem["state"]
        # per profile within 25% across a 4x size change, while events per profile differ
        met["state_linear_in_profiles"] = abs(big["bytes_per_profile"] / small["bytes_per_profile"] - 1) <= 0.25
    return met


def table(result: dict[str, Any]) -> str:
    """The human-readable table."""
    rows: list[tuple[str, str]] = []
    w = result["workload"]
    rows.append(
        (
            "workload",
            f"{w['events']:,} events ({w['clickstream']:,} clicks, {w['crm_changes']:,} CRM changes), "
            f"{w['avg_value_bytes']} B/value, 3 partitions per topic",
        )
    )
    c = result["ceiling"]
    rows.append(("ceiling (read + decode)", f"{c['eps']:,} ev/s   (read only: {c['read_only_eps']:,} ev/s)"))
    one = result["dataflow_1p"]
    rows.append(
        (
            "dataflow, 1 process",
            f"{one['eps']:,} ev/s   ({one['seconds']} s, ratio to ceiling {result['ratio_1p_to_ceiling']:.2f})",
        )
    )
    if result.get("dataflow_2p"):
        two = result["dataflow_2p"]
        rows.append(
            (
                "dataflow, 2 processes",
                f"{two['eps']:,} ev/s   ({two['seconds']} s, "
                f"{result['scale_2p_over_1p']:.2f}x one process, same trigger ids: "
                f"{result['same_trigger_ids_1p_2p']})",
            )
        )
    for name, lat in (result.get("latency") or {}).items():
        if not lat["triggers_measured"]:
            rows.append((f"latency, {name.replace('_', ' ')}", "n/a (no room to measure: use more --events)"))
            continue
        rows.append(
            (
                f"latency, {name.replace('_', ' ')}",
                f"p50 {lat['p50_ms']} ms, p99 {lat['p99_ms']} ms  ({lat['triggers_measured']} return_visit "
                f"triggers at {lat['rate_eps']:,} ev/s; watermark floor p50 {lat['p50_ms_watermark_floor']} ms, "
                f"p99 {lat['p99_ms_watermark_floor']} ms; broker alone p50 {lat['broker']['p50_ms']} ms, "
                f"p99 {lat['broker']['p99_ms']} ms)",
            )
        )
    mem = result.get("memory")
    rss = f"peak RSS 1 process {one['peak_rss_mb']} MB"
    if result.get("dataflow_2p"):
        rss += f", 2 processes {result['dataflow_2p']['peak_rss_mb']} MB (largest process)"
    rows.append(("memory", rss))
    for s in (mem or {}).get("state", []):
        rows.append(
            (
                f"state at {s['events']:,} events",
                f"{s['bytes_per_profile']:,} B/profile ({s['profiles']:,} profiles, "
                f"{s['events_per_profile']} events/profile, {s['state_bytes'] / 1e6:.1f} MB pickled); "
                f"engine alone {s['engine_eps']:,} ev/s",
            )
        )
    t = result["targets"]

    def mark(v: bool | None) -> str:
        return "n/a" if v is None else ("met" if v else "NOT met")

    rows.append(
        (
            "targets",
            f"1p >= ceiling/2: {mark(t['1p_at_least_half_the_ceiling'])}; "
            f"2p >= 1.6x: {mark(t['2p_at_least_1.6x_1p'])}; p99 < 100 ms: {mark(t['p99_under_100ms'])}; "
            f"state linear in profiles: {mark(t['state_linear_in_profiles'])}",
        )
    )
    width = max(len(k) for k, _ in rows)
    m = result["machine"]
    head = (
        f"profilestream bench, {result['date']}: {m['nproc']} cores {m['cpu']}, {m['ram_gb']} GB, "
        f"Python {m['python']}, bytewax {m['bytewax']}; load {result['load_at_start']} -> {result['load_at_end']}"
    )
    return "\n".join([head, ""] + [f"{k:<{width}}  {v}" for k, v in rows])


__all__ = ["TARGETS", "table"]
