"""The topology of a built dataflow, read off the flow itself (`bytewax.visualize`): steps, their
ports and every edge, as plain values. `profilestream describe` prints it; nothing here is typed
by hand but what the flow cannot say of itself: the state its stateful steps hold (`STATE`) and
the dead letters that leave inside a step rather than on a stream of their own (`DEAD_LETTERS_IN`).

Names are step ids without the flow's id (`decode.split`), ports `step.port` (`decode.dead_letters`).
"""

from __future__ import annotations

from dataclasses import dataclass

from bytewax.dataflow import Dataflow
from bytewax.visualize import RenderedOperator, to_rendered

from profilestream.flows import encode, snapshot
from profilestream.flows.resolve_step import RESOLVE_KEY

__all__ = ["DEAD_LETTERS_IN", "DEAD_LETTER_PORT", "STATE", "Edge", "State", "Step", "Topology", "topology"]

DEAD_LETTER_PORT = "dead_letters"
"""The name of every output port that carries dead letters off the main path (`Decoded`)."""


@dataclass(frozen=True)
class State:
    """What a stateful step holds, under which key."""

    key: str
    holds: str


STATE: dict[str, State] = {
    "resolve": State(RESOLVE_KEY, snapshot.RESOLVE_STATE),
    "profiles": State("profile_id", snapshot.PROFILE_STATE),
    "newest_holder": State("customer_id", snapshot.FEED_STATE),
}
"""The state of each stateful step of the profile flow, by step name."""

DEAD_LETTERS_IN: dict[str, str] = {"encode": encode.UNWRITABLE}
"""Steps that turn some of their items into dead letters on their one output stream."""

STATEFUL = frozenset({"stateful_batch", "stateful", "stateful_map", "stateful_flat_map", "collect_window"})


@dataclass(frozen=True)
class Edge:
    """A stream from an output port to an input port (`decode.events` -> `key_engine.up`)."""

    source: str
    target: str

    @property
    def source_step(self) -> str:
        return self.source.rsplit(".", 1)[0]

    @property
    def target_step(self) -> str:
        return self.target.rsplit(".", 1)[0]


@dataclass(frozen=True)
class Step:
    """One step: its name, its operator, its ports and, for a composite, its inner steps."""

    name: str
    kind: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    substeps: tuple[Step, ...]

    @property
    def stateful(self) -> bool:
        return self.kind in STATEFUL

    def walk(self) -> list[Step]:
        """This step and every step inside it, depth first."""
        return [self, *(inner for sub in self.substeps for inner in sub.walk())]


@dataclass(frozen=True)
class Topology:
    """The steps of a flow (top level, each with its inner steps) and every edge between ports."""

    flow_id: str
    steps: tuple[Step, ...]
    edges: tuple[Edge, ...]

    def all_steps(self) -> list[Step]:
        return [inner for step in self.steps for inner in step.walk()]

    def successors(self, port: str) -> list[str]:
        """The input ports fed by an output port."""
        return [edge.target for edge in self.edges if edge.source == port]

    def predecessors(self, port: str) -> list[str]:
        """The output ports that feed an input port."""
        return [edge.source for edge in self.edges if edge.target == port]


def topology(flow: Dataflow) -> Topology:
    """The topology of `flow` as Bytewax renders it.

    >>> import bytewax.operators as op
    >>> from bytewax.testing import TestingSink, TestingSource
    >>> flow = Dataflow("eg")
    >>> nums = op.input("nums", flow, TestingSource([1, 2]))
    >>> op.output("out", op.map("double", nums, lambda x: 2 * x), TestingSink([]))
    >>> for edge in topology(flow).edges:  # `map` is a composite of Bytewax's: its inner step too
    ...     print(edge.source, "->", edge.target)
    nums.down -> double.up
    double.up -> double.flat_map_batch.up
    double.flat_map_batch.down -> double.down
    double.down -> out.up
    """
    prefix = flow.flow_id + "."
    edges: list[Edge] = []

    def local(port_id: str) -> str:
        return port_id.removeprefix(prefix)

    def step(op: RenderedOperator) -> Step:
        for port in op.inp_ports:
            edges.extend(Edge(local(source), local(port.port_id)) for source in port.from_port_ids)
        substeps = tuple(step(sub) for sub in op.substeps)
        for port in op.out_ports:  # a composite's output is fed from inside it
            edges.extend(Edge(local(source), local(port.port_id)) for source in port.from_port_ids)
        return Step(
            local(op.step_id),
            op.op_type,
            tuple(local(port.port_id) for port in op.inp_ports),
            tuple(local(port.port_id) for port in op.out_ports),
            substeps,
        )

    steps = tuple(step(op) for op in to_rendered(flow).substeps)
    return Topology(flow.flow_id, steps, tuple(edges))
