"""Merges and moves across shards, with the transfer held back (issue 16, acceptance).

In the dataflow a merged profile's contents travel from its shard to the survivor's through the
transfer loop, and the survivor holds its later commands (its deadlines included) until they have
arrived. In-memory the loop is so quick that the holding may never happen; here the loop is
`HeldLoop`, which lets no transfer through before the end of input (and then the newest first), so
every survivor holds its later commands for the whole run. The profiles are on different workers
(asserted: their ids are picked so that Bytewax routes them apart on three workers), and every
scenario's outputs must equal the engine's, where a transfer arrives at once.

The events carry fixed ids because a profile's id is made from the event that created it
(`identity.profile_id`), and the worker a profile lives on from its id.
"""

from __future__ import annotations

import pytest

from profilestream.domain.commands import Apply, MergeIn, MergeOut, Transfer
from profilestream.domain.profile import Profile
from profilestream.domain.rules import Rules
from profilestream.domain.scores import Scorer
from profilestream.domain.shard import ProfileShard, ShardContext
from profilestream.flows.loop import LoopEnd, LoopProgress
from support.flowkit import HeldLoop, run_flow
from support.scenario import DAY, MINUTE, T0, click, crm, erase, run_engine, snapshot

WORKERS = 3
SECOND = 1_000


def _run_both(events, copies: int = 1):
    """The engine's result, and the dataflow's on three workers with every transfer held."""
    loop = HeldLoop(copies=copies)
    flowed = run_flow(events, workers=WORKERS, one_reader=True, loop=loop)
    return run_engine(events), flowed, loop


def _same(flowed, direct) -> None:
    """Everything both produced is the same: final profiles and CRM feed, tombstones, the merges
    in order, the triggers (ids, times, contents; one per id, in any order between workers)."""
    got, want = snapshot(flowed), snapshot(direct)
    key = lambda t: t["trigger_id"]  # noqa: E731
    got["triggers"], want["triggers"] = sorted(got["triggers"], key=key), sorted(want["triggers"], key=key)
    assert got == want


def _apart(flowed, *pairs: tuple[str, str]) -> None:
    """Each pair of profile ids lived on two different workers."""
    state = flowed.engine
    for left, right in pairs:
        assert state.worker_of(left) != state.worker_of(right), (left, right)


def _merge(res, n: int) -> tuple[str, str]:
    merge = res.merges[n]
    return merge["from_profile_id"], merge["into_profile_id"]


def test_a_merge_of_two_carts_with_pending_deadlines_across_shards_gives_the_engines_outputs():
    """A (anonymous, cart, deadline pending) logs in as K, whose profile has a cart and a pending
    deadline too; K's profile gets more cart events while A's contents are held in the loop.
    The merged cart is abandoned once, at the later deadline."""
    events = [
        click(0, "K-dev", "login", customer_key="k0", event_id="a0-1"),
        click(1, "K-dev", "add_to_cart", product_id="p1", price=5.0, event_id="a-2"),
        click(2, "A-dev", "page_view", event_id="a0-3"),
        click(3, "A-dev", "add_to_cart", product_id="p2", price=7.0, event_id="a-4"),
        click(10, "A-dev", "login", customer_key="k0", event_id="a-5"),
        click(11, "A-dev", "add_to_cart", product_id="p3", price=1.0, event_id="a-6"),
        click(12, "K-dev", "remove_from_cart", product_id="p1", event_id="a-7"),
        click(200, "K-dev", "page_view", event_id="a-8"),  # after the deadline: it fires first
    ]
    direct, flowed, loop = _run_both(events)
    _same(flowed, direct)
    source, into = _merge(direct, 0)
    _apart(flowed, (source, into))
    assert loop.delayed == 1 and flowed.engine.stats["shard.held"] >= 4  # the survivor waited
    [abandoned] = [t for t in direct.triggers if t["type"] == "cart_abandoned"]
    assert abandoned["profile_id"] == into and abandoned["ts"] == T0 + 72 * MINUTE  # the last cart event, plus an hour
    assert sorted(line["product_id"] for line in abandoned["cart"]) == ["p2", "p3"]
    assert direct.tombstones == {source}


def test_a_shared_device_moving_mid_visit_to_a_profile_in_another_shard_gives_the_engines_outputs():
    """D, C1's device, logs in as C2 during a visit: it moves to C2's profile, whose shard is
    still waiting for X's contents (X was merged into C2 a few minutes before). The visit is
    counted at C2 and, C2 now holding X's activity of eight days ago, it is a return visit there."""
    events = [
        crm(-20, "C1", customer_key="k1", change_id="b2-1"),
        crm(-20, "C2", customer_key="k2", change_id="b2-2"),
        click(-8 * DAY // MINUTE, "X", "page_view", event_id="b2-3"),
        click(0, "D", "login", customer_key="k1", event_id="b-4"),
        click(1, "X", "add_to_cart", product_id="p1", price=3.0, event_id="b-5"),
        click(2, "X", "login", customer_key="k2", event_id="b-6"),
        click(5, "D", "page_view", event_id="b-7"),
        click(10, "D", "login", customer_key="k2", event_id="b-8"),
        click(12, "D", "add_to_cart", product_id="p2", price=4.0, event_id="b-9"),
    ]
    direct, flowed, loop = _run_both(events)
    _same(flowed, direct)
    x, c2 = _merge(direct, 0)
    c1 = direct.of("C1")["profile_id"]
    assert direct.of("D")["profile_id"] == c2 and direct.of("C1")["device_ids"] == []
    _apart(flowed, (c1, c2), (x, c2))
    assert loop.delayed == 1 and flowed.engine.stats["shard.held"] >= 3
    returns = [t for t in direct.triggers if t["type"] == "return_visit" and t["device_id"] == "D"]
    assert [t["profile_id"] for t in returns] == [c2]
    assert direct.of("C2")["visits"] == 3  # X's two visits and D's, each counted once


@pytest.mark.parametrize("copies", [1, 2], ids=["once", "twice"])
def test_a_chain_of_merges_within_one_second_across_shards_gives_the_engines_outputs(copies):
    """A (anonymous, with a cart) logs in as K, whose profile B is known by its key only; half
    a second later the CRM ties K to customer C1: B is merged into C. B's shard holds its own
    merge until A's contents have come (at the end of input), and only then sends its contents,
    A's included, on to C, which holds everything after the merge until then. Written twice
    (a shard sends a transfer again when a recovery replays its merge), the bounded run's loop
    passes each on once."""
    at = T0 + 30 * MINUTE
    events = [
        crm(0, "C1", lead_status="lead", change_id="c2-1"),
        click(1, "B-dev", "login", customer_key="kc", event_id="c2-2"),
        click(2, "B-dev", "add_to_cart", product_id="p1", price=2.0, event_id="c-3"),
        click(3, "A-dev", "page_view", event_id="c2-4"),
        click(4, "A-dev", "add_to_cart", product_id="p2", price=9.0, event_id="c-5"),
        click(0, "A-dev", "login", customer_key="kc", event_id="c-6", ts=at),
        crm(0, "C1", customer_key="kc", change_id="c-7", ts=at + SECOND // 2),
        click(0, "A-dev", "add_to_cart", product_id="p3", price=1.0, event_id="c-8", ts=at + SECOND - 1),
    ]
    direct, flowed, loop = _run_both(events, copies)
    _same(flowed, direct)
    assert loop.delayed == 1 and flowed.engine.stats["shard.transfers_repeated"] == 0  # copies: dropped by the loop
    a, b = _merge(direct, 0)
    b_again, c = _merge(direct, 1)
    assert b_again == b and [m["reason"] for m in direct.merges] == ["login", "crm_link"]
    _apart(flowed, (a, b), (b, c))
    # B's contents leave only once A's have reached it
    assert flowed.engine.stats["shard.held"] >= 3
    final = direct.of("C1")
    assert final["profile_id"] == c and sorted(final["device_ids"]) == ["A-dev", "B-dev"]
    assert direct.tombstones == {a, b}
    [abandoned] = [t for t in direct.triggers if t["type"] == "cart_abandoned"]
    assert abandoned["profile_id"] == c
    assert sorted(line["product_id"] for line in abandoned["cart"]) == ["p1", "p2", "p3"]


def test_an_erase_of_a_profile_whose_state_is_in_transit_gives_the_engines_outputs():
    """A (anonymous, cart pending) logs in as C1's key and is merged into C1; C1 is erased a
    millisecond later, while A's contents are still in the loop. The erase waits for them, so
    nothing of A or C1 survives, no abandoned cart fires, and A's device starts afresh."""
    login = T0 + 10 * MINUTE
    events = [
        crm(0, "C1", customer_key="kd", marketing_consent=True, change_id="d0-1"),
        click(1, "A-dev", "page_view", event_id="d0-2"),
        click(2, "A-dev", "add_to_cart", product_id="p1", price=5.0, event_id="d-3"),
        click(0, "A-dev", "login", customer_key="kd", event_id="d-4", ts=login),
        erase(0, "C1", change_id="d-5", ts=login + 1),
        click(0, "A-dev", "page_view", event_id="d0-6", ts=login + MINUTE),
    ]
    direct, flowed, loop = _run_both(events)
    _same(flowed, direct)
    a, c1 = _merge(direct, 0)
    _apart(flowed, (a, c1))
    assert loop.delayed == 1 and flowed.engine.stats["shard.held"] >= 1
    assert direct.tombstones == {a, c1} and direct.feed == {}
    assert [t for t in direct.triggers if t["type"] == "cart_abandoned"] == []
    fresh = direct.of("A-dev")
    assert fresh["profile_id"] not in (a, c1) and fresh["customer_id"] is None


def test_a_transfer_read_again_is_dropped_by_its_survivor_and_after_it_is_gone():
    """An always-on run's loop passes copies on (it keeps no record of what it read): the
    survivor drops one by its `seq`, whether it has absorbed it or has since been merged away."""
    ctx = ShardContext(Rules(), Scorer(Rules().scores))
    out: list = []
    sent: list = []
    survivor = ProfileShard("V")
    survivor.take(MergeIn("S", 0, 0), ctx, 0, out, sent)
    survivor.take(Apply(click(1, "d1", "page_view", event_id="r-1"), False, True), ctx, 0, out, sent)
    assert ctx.stats["shard.held"] == 1 and survivor.profile is None
    contents = Profile("S")
    contents.visits = 2
    survivor.receive(Transfer("V", 0, contents), ctx, 0, out, sent)
    assert survivor.profile is not None and survivor.profile.visits == 3
    survivor.receive(Transfer("V", 0, contents), ctx, 0, out, sent)
    assert survivor.profile.visits == 3 and ctx.stats["shard.transfers_repeated"] == 1
    survivor.take(MergeOut("W", 1), ctx, 0, out, sent)
    assert survivor.gone and [t.seq for t in sent] == [1]
    survivor.receive(Transfer("V", 0, contents), ctx, 0, out, sent)
    assert ctx.stats["shard.transfers_repeated"] == 2 and [t.seq for t in sent] == [1]


def test_a_bounded_loop_passes_each_transfer_on_once_and_ends_when_all_have_come():
    transfer = Transfer("V", 0, Profile("S"))
    bounded = LoopProgress(bounded=True)
    assert bounded.take(transfer) is transfer
    assert bounded.take(LoopEnd(0, 2)) is None and not bounded.done
    assert bounded.take(transfer) is None and not bounded.done  # a copy counts once
    assert bounded.take(Transfer("V", 1, Profile("T"))) is not None and bounded.done
    always_on = LoopProgress(bounded=False)
    assert always_on.take(transfer) is transfer and always_on.take(transfer) is transfer
    assert not always_on.seen and not always_on.done
