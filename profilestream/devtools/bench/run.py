"""The whole benchmark in one run on the embedded broker (the package doc says what it measures)."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from profilestream.devtools.bench.ceiling import ceiling
from profilestream.devtools.bench.dataflow import dataflow
from profilestream.devtools.bench.latency import _latency, broker_latency
from profilestream.devtools.bench.report import _targets
from profilestream.devtools.bench.state import state
from profilestream.devtools.bench.support import _load, _median, _names, _renamed, _say, _with, machine
from profilestream.devtools.bench.workload import load
from profilestream.domain.roles import INPUT_ROLES

if TYPE_CHECKING:
    from profilestream.config import Config

DEFAULT_EVENTS = 1_000_000


def run_bench(
    config: Config,
    events: int = DEFAULT_EVENTS,
    repeat: int = 1,
    skip_latency: bool = False,
    skip_two: bool = False,
    skip_memory: bool = False,
    latency_seconds: float = 20.0,
    default_lateness: bool = False,
    config_path: str | None = None,
    seed: int = 7,
    latency_rates: tuple[float, ...] = (),
) -> dict[str, Any]:
    from profilestream.devtools.broker import EmbeddedBroker
    from profilestream.kafka.clients import create_topics

    result: dict[str, Any] = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "load_at_start": _load(),
        "events_requested": events,
        "repeat": repeat,
    }
    with EmbeddedBroker() as broker:
        config = _with(config, broker.bootstrap, _names("bench-", INPUT_ROLES))
        create_topics(dataclasses.replace(config, topics=_renamed(config.topics, _names("bench-x-"))))

        _say(f"==> generating and loading {events:,} events into {broker.bootstrap}")
        workload, summary = load(config, events, seed)
        result["workload"] = summary
        total = summary["events"]
        _say(f"    {summary}")

        _say("==> ceiling: one consumer reading and decoding every input record")
        samples = [ceiling(config, total) for _ in range(max(3, repeat))]  # cheap: always a median of 3
        read_only = ceiling(config, total, decode=False)
        result["ceiling"] = {
            "eps": round(_median([s["eps"] for s in samples])),
            "samples_eps": [s["eps"] for s in samples],
            "read_only_eps": read_only["eps"],
        }
        _say(f"    {result['ceiling']}")

        runs: dict[int, list[dict[str, Any]]] = {}
        for processes in (1,) if skip_two else (1, 2):
            for r in range(max(1, repeat)):
                _say(f"==> dataflow run --until-idle, {processes} process(es), run {r + 1}/{max(1, repeat)}")
                sample = dataflow(config, total, processes, f"p{processes}r{r}")
                runs.setdefault(processes, []).append(sample)
                _say(f"    { ({k: v for k, v in sample.items() if k != 'trigger_ids'}) }")
        for processes, samples_p in runs.items():
            key = f"dataflow_{processes}p"
            result[key] = {
                "eps": round(_median([s["eps"] for s in samples_p])),
                "seconds": round(_median([s["seconds"] for s in samples_p]), 2),
                "samples_eps": [s["eps"] for s in samples_p],
                "cpu_seconds": round(_median([s["cpu_seconds"] for s in samples_p]), 1),
                "peak_rss_mb": max(s["peak_rss_mb"] for s in samples_p),
                "triggers": samples_p[0]["triggers"],
                "load_before": [s["load_before"] for s in samples_p],
            }
        ids = {p: s[0]["trigger_ids"] for p, s in runs.items()}
        result["same_trigger_ids_1p_2p"] = (ids.get(1) == ids.get(2)) if 2 in ids else None
        one = result["dataflow_1p"]["eps"]
        result["ratio_1p_to_ceiling"] = round(one / result["ceiling"]["eps"], 3)
        result["scale_2p_over_1p"] = round(result["dataflow_2p"]["eps"] / one, 3) if 2 in runs else None

        result["latency"] = None
        if not skip_latency:
            rate = one / 2
            backlog = min(max(1000, total // 10), 30_000)
            # (name, lateness, rate): half load as the issue asks, then any other rates asked for
            cases = [("lateness_0s", "0s", rate)]
            if default_lateness:
                cases.append(("lateness_30s", "30s", rate))
            cases += [(f"lateness_0s_at_{r:,.0f}_eps", "0s", r) for r in latency_rates]
            result["latency"] = {}
            for name, lateness, case_rate in cases:
                # while the run catches up on the backlog, live traffic keeps arriving: it is done
                # after about backlog / (throughput - rate); three times that, at least 8 s
                case_warmup = max(8.0, 3 * backlog / max(1.0, one - case_rate))
                _say(
                    f"==> latency: live run, lateness {lateness}, {case_rate:,.0f} events/s, "
                    f"warm-up {case_warmup:.0f}s, measuring {latency_seconds:.0f}s, on a fresh broker"
                )
                # A fresh broker for each: Tansu (in memory) answers more slowly the more it holds,
                # and by now it holds the workload and every dataflow run's outputs.
                with EmbeddedBroker() as fresh:
                    live_config = _with(config, fresh.bootstrap, {})
                    measured = _latency(
                        live_config,
                        workload,
                        case_rate,
                        lateness,
                        latency_seconds if lateness == "0s" else min(latency_seconds, 10.0),
                        backlog,
                        case_warmup,
                        config_path,
                    )
                    _say(f"    broker alone at {case_rate:,.0f} records/s, over the same span:")
                    measured["broker"] = broker_latency(live_config, case_rate, case_warmup, measured["measured_s"])
                result["latency"][name] = measured
                _say(f"    {measured}")
        del workload

    result["memory"] = None
    if not skip_memory:
        sizes = sorted({max(1000, total // 4), total})
        result["memory"] = {
            "how": "len(pickle.dumps(engine)) after feeding the whole input (before end of input is declared), "
            "divided by its number of profiles; engine alone in a child process, two sizes",
            "peak_rss_mb_1p": result["dataflow_1p"]["peak_rss_mb"],
            "peak_rss_mb_2p": result["dataflow_2p"]["peak_rss_mb"] if "dataflow_2p" in result else None,
            "state": [],
        }
        for size in sizes:
            _say(f"==> state: engine alone on {size:,} events")
            measured = state(config, size, seed)
            result["memory"]["state"].append(measured)
            _say(f"    {measured}")
    result["load_at_end"] = _load()
    result["targets"] = _targets(result)
    return result


__all__ = ["DEFAULT_EVENTS", "run_bench"]
