"""`profilestream describe`: the dataflow's topology, printed from the flow itself.

Like Kafka Streams' `TopologyDescription`: every step (a composite with its inner steps below it),
every edge, where dead letters leave the main path, the topics read and written (from the
configured `[topics]` roles) and which steps hold state under which key. The flow is the one
`run` builds (`build_flow`), with the configured partition count; building it connects to no
broker, so `describe` works without one.
"""

from __future__ import annotations

from typing import Any

from profilestream.domain.roles import DEAD_LETTERS, INPUT_ROLES, OUTPUT_ROLES
from profilestream.flows.profiles import build_flow
from profilestream.flows.topology import DEAD_LETTER_PORT, DEAD_LETTERS_IN, STATE, Step, Topology, topology
from profilestream.kafka.transfers import RETENTION_MS, transfers_topic

__all__ = ["describe", "main", "render"]

_PLAIN_PORTS = (".up", ".ups", ".down")  # a step's one stream: named by the step alone


def _short(port: str, within: str = "") -> str:
    """`decode.events`, or `unkey` for unkey's one stream; an enclosing composite's own ports keep
    their names (`key_engine.up` is where its input enters, `key_engine.down` where its output leaves)."""
    if within.startswith(port.rsplit(".", 1)[0] + "."):
        return port
    for suffix in _PLAIN_PORTS:
        if port.endswith(suffix):
            return port.removesuffix(suffix)
    return port


def _topics(config: Any, roles: tuple[str, ...], partitions: bool = False) -> str:
    def one(role: str) -> str:
        name = config.topics.name(role)
        return f'{role} "{name}"' + (f" ({config.topics.partitions} partitions)" if partitions else "")

    return ", ".join(one(role) for role in roles)


LOOP_STEPS = ("read_transfers", "write_transfers")  # the transfer loop's ends: the internal topic


def _internal(config: Any) -> str:
    return (
        f'transfers "{transfers_topic(config)}" ({config.topics.partitions} partitions, keyed by the surviving '
        f"profile id, cleanup.policy=delete, retention {RETENTION_MS // 86_400_000}d)"
    )


def _step_lines(config: Any, topo: Topology, step: Step, depth: int) -> list[str]:
    pad = "  " * (depth + 1)
    kind = {"input": "Source", "output": "Sink"}.get(step.kind, "Processor" if depth == 0 else "Step")
    lines = [f"{pad}{kind}: {step.name} ({step.kind}{', composite' if step.substeps else ''})"]
    pad += "  "
    if step.name in LOOP_STEPS:
        lines.append(f"{pad}internal topic: {_internal(config)}")
        if step.kind == "output":
            lines.append(f"{pad}~~> read_transfers (through the internal topic: the loop back into profiles)")
    elif step.kind == "input":
        lines.append(f"{pad}topics: {_topics(config, INPUT_ROLES, partitions=True)}")
    elif step.kind == "output":
        lines.append(f"{pad}topics: {_topics(config, OUTPUT_ROLES)}")
    if step.stateful:
        state = STATE.get(step.name.rsplit(".", 1)[-1])
        lines.append(f'{pad}state: key "{state.key}", {state.holds}' if state else f"{pad}state: (not described)")
    for port in step.inputs:
        lines.append(f"{pad}<-- {', '.join(_short(p, step.name) for p in topo.predecessors(port)) or '(nothing)'}")
    dead_topic = config.topics.name(DEAD_LETTERS)
    for port in step.outputs:
        name = port.rsplit(".", 1)[-1]
        label = "" if port.endswith(_PLAIN_PORTS) else f"{name} "
        targets = ", ".join(_short(p, step.name) for p in topo.successors(port)) or "(nothing)"
        exit_note = ""
        if name == DEAD_LETTER_PORT and depth == 0:
            exit_note = f'   <- dead letters leave the main path here, for "{dead_topic}"'
        lines.append(f"{pad}{label}--> {targets}{exit_note}")
    if step.name in DEAD_LETTERS_IN:
        lines.append(f'{pad}dead letters: {DEAD_LETTERS_IN[step.name]}, for "{dead_topic}" (on its one stream)')
    for sub in step.substeps:
        lines.extend(_step_lines(config, topo, sub, depth + 1))
    return lines


def render(config: Any, topo: Topology) -> str:
    """The description of `topo` with the topics of `config`."""
    stateful = [step for step in topo.all_steps() if step.stateful]
    dead_exits = [port for step in topo.steps for port in step.outputs if port.rsplit(".", 1)[-1] == DEAD_LETTER_PORT]
    lines = [
        f"Topology: {topo.flow_id}",
        f"  Topics read:    {_topics(config, INPUT_ROLES, partitions=True)}",
        f"  Topics written: {_topics(config, OUTPUT_ROLES)}",
        f"  Internal topic: {_internal(config)}",
        "  Dead letters:   "
        + ", ".join([*dead_exits, *(f"inside {name} ({why})" for name, why in DEAD_LETTERS_IN.items())])
        + f' -> "{config.topics.name(DEAD_LETTERS)}"',
        "  State:          "
        + (
            "; ".join(
                f'{s.name}: {s.kind}, key "{STATE[s.name].key}", state: {STATE[s.name].holds}'
                if s.name in STATE
                else f"{s.name}: {s.kind}"
                for s in stateful
            )
            or "none"
        ),
        "",
    ]
    for step in topo.steps:
        lines.extend(_step_lines(config, topo, step, 0))
    return "\n".join(lines)


def describe(config: Any) -> str:
    """The topology of the flow `run` would build with `config`, as text."""
    flow = build_flow(config, {role: config.topics.partitions for role in INPUT_ROLES})
    return render(config, topology(flow))


def main(config: Any) -> int:
    """The `describe` command: print the description; 0."""
    print(describe(config))
    return 0
