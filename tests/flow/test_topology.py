"""`profilestream describe` is read off the dataflow as built (issue 15 item 4): every step, every
edge, the dead-letter exits, the configured topics and the stateful steps with their keys."""

from __future__ import annotations

from bytewax.visualize import to_rendered

from profilestream.commands import describe
from profilestream.config import load_config
from profilestream.domain.roles import DEAD_LETTERS, INPUT_ROLES, OUTPUT_ROLES
from profilestream.flows.profiles import build_flow
from profilestream.flows.snapshot import FEED_STATE, PROFILE_STATE, RESOLVE_STATE


def _config(tmp_path):
    path = tmp_path / "profilestream.toml"
    path.write_text(
        "[topics]\npartitions = 5\n"
        + "".join(f'{role} = "shop-{role.replace("_", "-")}-v2"\n' for role in (*INPUT_ROLES, *OUTPUT_ROLES))
    )
    return load_config(str(path))


def _walk(ops, prefix):
    """(step name, operator) of every step, and (from port, to port) of every edge, by Bytewax."""
    steps, edges = [], []
    for op in ops:
        steps.append((op.step_id.removeprefix(prefix), op.op_type))
        for port in [*op.inp_ports, *op.out_ports]:
            edges += [(src.removeprefix(prefix), port.port_id.removeprefix(prefix)) for src in port.from_port_ids]
        inner_steps, inner_edges = _walk(op.substeps, prefix)
        steps += inner_steps
        edges += inner_edges
    return steps, edges


def _short(port):
    return port.rsplit(".", 1)[0] if port.rsplit(".", 1)[1] in ("up", "ups", "down") else port


def test_describe_names_every_step_and_edge_of_the_flow_as_built(tmp_path):
    config = _config(tmp_path)
    text = describe.describe(config)
    flow = build_flow(config, {role: 5 for role in INPUT_ROLES})
    steps, edges = _walk(to_rendered(flow).substeps, flow.flow_id + ".")
    assert ("decode", "decode") in steps and ("decode.split", "branch") in steps and ("encode", "encode") in steps
    lines = text.splitlines()
    for name, kind in steps:
        assert any(line.strip().endswith(f"{name} ({kind})") or f" {name} ({kind}," in line for line in lines), name
    assert len(edges) == 43
    for source, target in edges:  # under the step it enters (`<-- source`) or the step it leaves (`--> target`)
        entering = [line for line in _block(text, target.rsplit(".", 1)[0]) if "<--" in line]
        leaving = [line for line in _block(text, source.rsplit(".", 1)[0]) if "-->" in line]
        assert any(_short(source) in line or source in line for line in entering) or any(
            _short(target) in line or target in line for line in leaving
        ), (source, target)


def _block(text, step):
    """The lines printed for `step` (its header to the next step's header), without its inner steps."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if f": {step} (" in line)
    depth = len(lines[start]) - len(lines[start].lstrip())
    block = []
    for line in lines[start + 1 :]:
        header = line.lstrip().split(":")[0] in ("Source", "Processor", "Step", "Sink")
        if header and len(line) - len(line.lstrip()) <= depth + 2:
            break
        block.append(line)
    return block


def test_the_dead_letter_exits_are_named(tmp_path):
    config = _config(tmp_path)
    text = describe.describe(config)
    dead = config.topics.name(DEAD_LETTERS)
    assert dead == "shop-dead-letters-v2"
    exit_line = next(line for line in _block(text, "decode") if line.strip().startswith("dead_letters -->"))
    assert "outputs" in exit_line and "leave the main path" in exit_line and f'"{dead}"' in exit_line
    assert any("unwritable" in line and f'"{dead}"' in line for line in _block(text, "encode"))
    assert "decode.dead_letters" in _block(text, "outputs")[0]


def test_the_topics_are_the_configured_ones(tmp_path):
    config = _config(tmp_path)
    text = describe.describe(config)
    source = "\n".join(_block(text, "read"))
    sink = "\n".join(_block(text, "write"))
    for role in INPUT_ROLES:
        assert f'{role} "shop-{role.replace("_", "-")}-v2" (5 partitions)' in source
    for role in OUTPUT_ROLES:
        assert f'{role} "shop-{role.replace("_", "-")}-v2"' in sink
    assert '"clickstream"' not in text and '"profiles"' not in text  # no default name typed in


def test_the_stateful_steps_name_their_key_and_state(tmp_path):
    text = describe.describe(_config(tmp_path))
    assert f'resolve: stateful_batch, key "identity", state: {RESOLVE_STATE}' in text
    assert f'profiles: stateful_batch, key "profile_id", state: {PROFILE_STATE}' in text
    assert any(line.strip() == f'state: key "identity", {RESOLVE_STATE}' for line in _block(text, "resolve"))
    assert any(line.strip() == f'state: key "profile_id", {PROFILE_STATE}' for line in _block(text, "profiles"))
    assert f'newest_holder: stateful_batch, key "customer_id", state: {FEED_STATE}' in text


def test_the_transfer_loop_is_the_internal_topic_named_from_the_profiles_topic(tmp_path):
    text = describe.describe(_config(tmp_path))
    internal = 'transfers "shop-profiles-v2-transfers" (5 partitions, keyed by the surviving profile id'
    assert f"Internal topic: {internal}" in text
    for step in ("read_transfers", "write_transfers"):
        assert any(internal in line for line in _block(text, step)), step
    # the loop closes through the profiles step: it feeds it and is fed by it
    assert any("to_shards" in line for line in _block(text, "key_transfers") if "-->" in line)
    assert any("transfers_out" in line for line in _block(text, "write_transfers") if "<--" in line)


def test_main_prints_and_returns_0(tmp_path, capsys):
    config = _config(tmp_path)
    assert describe.main(config) == 0
    assert capsys.readouterr().out == describe.describe(config) + "\n"
