"""`profilestream bench`: the reference benchmark, in one run on the embedded broker (or on Apache
Kafka: `--broker kafka`).

What it measures (BENCHMARKS.md has the latest figures and how to read them):

1. **load**: generates the reference shop (`sample.generate`, default 1,000,000 records:
   clickstream plus CRM changes) and produces it, Avro-encoded and keyed as `produce` does, into
   the two input topics (3 partitions each).
2. **ceiling**: one plain confluent-kafka consumer (`assign`, no group) reads every input record
   and Avro-decodes it with `avro.decode_input` (the dataflow's own decode and validation), and
   does nothing else. Events/s. (Also the same read without decoding, to split the two costs.)
3. **dataflow**: `runner.run(config, until_idle=True, processes=P)` for P = 1 and 2 (timed) and 4
   (once: correctness and the spread of the CPU on two cores), each in a child process of its own
   and with fresh output topics. Events/s = input records / the wall time of `runner.run` (broker
   check, input bounds, Bytewax start, processing, final flush). Per process: peak RSS and CPU;
   the trigger ids and the final profiles, compared with one process's; the serial stage's share
   of the one-process run; and an idle process's baseline (a run over empty topics).
4. **latency**: an always-on `profilestream run` (a subprocess) with
   `time.allowed_lateness = "0s"`, fed live at half the measured one-process throughput. A
   backlog (the start of the shop, its times shifted to end eight days ago) gives the run
   history; the live records that follow are produced in order, spread over every partition by
   their keys, each with `ts` = the wall clock at its produce call. A device with history then
   fires `return_visit` at its first live click (its last activity was more than 7 days ago);
   latency is the time from that click's produce call to the trigger record's arrival at a
   consumer of the `triggers` topic, matched by (device_id, ts). Clicks produced while the run
   was still catching up on the backlog are not counted (a warm-up, see `_latency`). Optionally
   the same with the default lateness (30s), where the expected figure is about the lateness,
   and at other rates (`--latency-rates`). Each live run gets a fresh embedded broker, and beside
   it the broker's own produce -> consume latency at the same rate over the same span is
   measured (`broker_latency`): the dataflow's path crosses the broker twice.
5. **memory**: the peak RSS of each dataflow run (`getrusage`: self for one process, the largest
   cluster process for two), and the state per profile: the pickled `Engine` (exactly what the
   dataflow snapshots for recovery, `EngineLogic.snapshot`) after the whole input has been fed
   but before the end of input is declared (so windows such as de-duplication still hold what an
   always-on run holds), divided by its number of profiles. That replay runs the engine alone
   (decode + `Engine.feed`, no Kafka, no Bytewax) in a child process, at the full size and at a
   quarter of it: bytes per profile that stay flat while events per profile change show that
   state grows with profiles, not with events. The same replay gives the engine-only rate, the
   bound of the single keyed `apply` step (with the dataflow's GC setting and `run.emit_interval`).

6. **serial stage** (`serial`): resolution alone over the decoded workload, best of N: its cost
   per event and the ceiling 1 / cost that it sets for a cluster of any size.
7. **snapshots** (`snapshots`): in the live run at 5,000 ev/s with recovery on, the bytes Bytewax
   writes per epoch (read from its recovery partitions) and resolution's changelog beside them,
   by step, against a full-state snapshot.

Timing lives here only; no test asserts a time. `--out FILE.json` keeps the figures.

The modules: `workload` (1), `ceiling` (2), `dataflow` (3), `latency` (4), `state` (5),
`serial` (6), `snapshots` (7),
`children` (the child processes they run in), `ts` (rewriting an Avro record's `ts`), `support`
(helpers), `report` (targets and table), `run` (`run_bench`, the whole run) and `cli`. Importing
the package loads only the standard library: `profilestream.cli` builds `bench`'s arguments
from it at every start.
"""

from profilestream.devtools.bench.ceiling import ceiling
from profilestream.devtools.bench.cli import _rates, add_arguments, main
from profilestream.devtools.bench.dataflow import dataflow
from profilestream.devtools.bench.latency import broker_latency
from profilestream.devtools.bench.report import TARGETS, table
from profilestream.devtools.bench.run import DEFAULT_EVENTS, run_bench
from profilestream.devtools.bench.state import state
from profilestream.devtools.bench.support import machine
from profilestream.devtools.bench.ts import retime
from profilestream.devtools.bench.workload import load, produce_all

__all__ = [
    "DEFAULT_EVENTS",
    "TARGETS",
    "_rates",
    "add_arguments",
    "broker_latency",
    "ceiling",
    "dataflow",
    "load",
    "machine",
    "main",
    "produce_all",
    "retime",
    "run_bench",
    "state",
    "table",
]
