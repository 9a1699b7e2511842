"""The targets the figures are judged by, and the human-readable table."""

from __future__ import annotations

from typing import Any

TARGETS = {
    # issue 16 (this 2-core machine, one run, the broker sharing the cores)
    "scale_2p_over_1p": 1.6,  # two processes at least 1.6 times one
    "one_process_eps": 34_698 * 0.9,  # one process no more than 10% slower than the one-step design's 34,698 ev/s
    "serial_ceiling_eps": 250_000,  # 1 / (the serial stage's cost per event)
    "state_2p_share": 0.6,  # per process with 2 processes (peak RSS above idle) at most 60% of one process's
    "busiest_4p_cpu_share": 0.35,  # with 4 processes the busiest does at most 35% of the run's CPU
    "snapshot_share": 0.1,  # bytes per snapshot in a live run at most 10% of a full-state snapshot
    # issue 12
    "latency_p99_ms": 100.0,  # p99 under 100 ms at half load (lateness 0s)
}


def state_2p_share(result: dict[str, Any]) -> float | None:
    """The largest process's peak RSS above an idle process's, with 2 processes, over one process's."""
    idle = (result.get("idle") or {}).get("peak_rss_mb")
    one, two = result.get("dataflow_1p"), result.get("dataflow_2p")
    if idle is None or not one or not two or not two.get("peak_rss_mb_per_process"):
        return None
    above = one["peak_rss_mb"] - idle
    return round((max(two["peak_rss_mb_per_process"]) - idle) / above, 3) if above > 0 else None


def snapshot_case(result: dict[str, Any]) -> dict[str, Any] | None:
    """The live run whose snapshots are judged: the one at 5,000 ev/s."""
    for name, lat in (result.get("latency") or {}).items():
        if name.endswith("_at_5,000_eps") and lat.get("snapshots"):
            return lat
    return None


def _targets(result: dict[str, Any]) -> dict[str, Any]:
    def at_least(value: float | None, target: float) -> bool | None:
        return None if value is None else value >= target

    def at_most(value: float | None, target: float) -> bool | None:
        return None if value is None else value <= target

    four = result.get("dataflow_4p") or {}
    snap = snapshot_case(result)
    serial = result.get("serial") or {}
    met: dict[str, Any] = {
        "2p_at_least_1.6x_1p": at_least(result.get("scale_2p_over_1p"), TARGETS["scale_2p_over_1p"]),
        "1p_at_least_31,228_eps": at_least(result["dataflow_1p"]["eps"], TARGETS["one_process_eps"]),
        "serial_ceiling_at_least_250k_eps": at_least(serial.get("ceiling_eps"), TARGETS["serial_ceiling_eps"]),
        "state_2p_at_most_60%": at_most(state_2p_share(result), TARGETS["state_2p_share"]),
        "busiest_of_4p_at_most_35%_cpu": at_most(four.get("busiest_cpu_share"), TARGETS["busiest_4p_cpu_share"]),
        "snapshot_at_most_10%_of_full": at_most(
            snap["snapshots"]["median_share_of_full"] if snap else None, TARGETS["snapshot_share"]
        ),
        "same_outputs_1p_2p_4p": None,
        "p99_under_100ms": None,
    }
    checks = [
        result.get(k)
        for k in ("same_trigger_ids_1p_2p", "same_profiles_1p_2p", "same_trigger_ids_1p_4p", "same_profiles_1p_4p")
    ]
    if any(c is not None for c in checks):
        met["same_outputs_1p_2p_4p"] = all(c is not False for c in checks)
    lat = (result.get("latency") or {}).get("lateness_0s")
    if lat and lat["triggers_measured"]:
        met["p99_under_100ms"] = lat["p99_ms"] < TARGETS["latency_p99_ms"]
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
    for p in (2, 4):
        run = result.get(f"dataflow_{p}p")
        if not run:
            continue
        scale = f"{run['eps'] / one['eps']:.2f}x one process, " if one["eps"] else ""
        rows.append(
            (
                f"dataflow, {p} processes",
                f"{run['eps']:,} ev/s   ({run['seconds']} s, {scale}same trigger ids: "
                f"{result.get(f'same_trigger_ids_1p_{p}p')}, "
                f"same final profiles: {result.get(f'same_profiles_1p_{p}p')}"
                + (", correctness run on 2 cores)" if p == 4 else ")"),
            )
        )
    for p in (1, 2, 4):
        run = result.get(f"dataflow_{p}p")
        if run and run.get("cpu_seconds_per_process"):
            rows.append(
                (
                    f"per process, {p}p",
                    f"peak RSS {run['peak_rss_mb_per_process']} MB, CPU {run['cpu_seconds_per_process']} s "
                    f"(busiest {100 * (run['busiest_cpu_share'] or 0):.0f}% of the run's CPU)",
                )
            )
    serial = result.get("serial")
    if serial:
        rows.append(
            (
                "serial stage alone",
                f"{serial['us_per_event']} us/event wall, {serial['cpu_us_per_event']} us CPU (best of "
                f"{serial['repeat']}, {serial['events']:,} events): ceiling {serial['ceiling_eps']:,} ev/s; "
                f"Resolver alone {serial['resolver_us_per_event']} us; load {serial['load_before']} -> "
                f"{serial['load_after']}; calibration loop {serial.get('calibration_s')} s",
            )
        )
    busy = one.get("resolve_step")
    if busy:
        rows.append(
            (
                "serial stage in the 1p run",
                f"{busy['us_per_event']} us/event inside on_batch ({busy['cpu_us_per_event']} us CPU), "
                f"{100 * busy['share_of_wall']:.0f}% of the run's wall time, "
                f"{100 * (busy['share_of_cpu'] or 0):.0f}% of its CPU",
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
    snap = snapshot_case(result)
    if snap:
        sn = snap["snapshots"]
        rows.append(
            (
                f"snapshots at {snap['rate_eps']:,} ev/s",
                f"median {sn['median_bytes_per_epoch'] / 1e6:.2f} MB per epoch "
                f"(max {sn['max_bytes_per_epoch'] / 1e6:.2f}; {sn['epochs']} epochs, the first holds the backlog), "
                f"full state {sn['full_state_bytes'] / 1e6:.2f} MB: "
                f"{100 * (sn['median_share_of_full'] or 0):.1f}%; pickling {sn['seconds_per_epoch']} s per epoch; "
                + ", ".join(
                    f"{step.rsplit('.', 1)[-1]} {sorted(sizes)[len(sizes) // 2] / 1e6:.2f} MB"
                    for step, sizes in (sn.get("bytes_per_epoch_by_step") or {}).items()
                    if sizes
                )
                + " (median per epoch by step)",
            )
        )
    mem = result.get("memory")
    idle = result.get("idle")
    rss = f"peak RSS 1 process {one['peak_rss_mb']} MB"
    if result.get("dataflow_2p"):
        rss += f", 2 processes {result['dataflow_2p']['peak_rss_mb']} MB (largest process)"
    if idle:
        rss += f"; idle process {idle['peak_rss_mb']} MB; 2p above idle / 1p above idle: {state_2p_share(result)}"
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

    rows.append(("targets", "; ".join(f"{name}: {mark(v)}" for name, v in t.items())))
    width = max(len(k) for k, _ in rows)
    m = result["machine"]
    head = (
        f"profilestream bench, {result['date']}: {m['nproc']} cores {m['cpu']}, {m['ram_gb']} GB, "
        f"Python {m['python']}, bytewax {m['bytewax']}, broker {m['broker']}; "
        f"load {result['load_at_start']} -> {result['load_at_end']}"
    )
    return "\n".join([head, ""] + [f"{k:<{width}}  {v}" for k, v in rows])


__all__ = ["TARGETS", "snapshot_case", "state_2p_share", "table"]
