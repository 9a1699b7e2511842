"""Compact pickling (`domain/compact.py`) and snapshots of earlier builds still loading."""

from __future__ import annotations

import heapq
import pickle
from dataclasses import dataclass, field

import pytest

from profilestream.domain.cart import Cart, Line
from profilestream.domain.commands import (
    AddVisit,
    Apply,
    Deadline,
    Erase,
    Ids,
    MergeIn,
    MergeOut,
    ReturnVisit,
    Transfer,
)
from profilestream.domain.compact import pickled_as_fields
from profilestream.domain.events import Campaign, Click, CrmChange
from profilestream.domain.outputs import Output
from profilestream.domain.person import Person
from profilestream.domain.profile import CampaignTouch, Profile
from profilestream.domain.timeline import SourceClock, Timeline
from profilestream.domain.visits import DeviceVisit
from profilestream.kafka.source import PartitionEnd, Raw


def roundtrip(value):
    return pickle.loads(pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL))


def test_records_pickle_as_equal_objects():
    campaign = Campaign("newsletter", "email", None)
    values = [
        Click("e1", 5, "d1", "add_to_cart", customer_key="k", product_id="p", price=2.5, quantity=3, campaign=campaign),
        CrmChange("c1", 6, "C1", "upsert", attributes={"tier": "gold", "ltv": 10.0}, marketing_consent=False),
        campaign,
        Output("profiles", "p-1", {"a": [1, 2]}),
        Output("profiles", "p-1", None),
        Raw("clickstream", "clicks", 2, 17, b"k", b"v", 123),
        PartitionEnd("clicks/2"),
        Line(2, None),
        CampaignTouch(1, 2),
        DeviceVisit(start=1, last=2, number=3, counted_in={"p-1"}, return_done=True),
        SourceClock(latest=9, heard_at=10, ended=True),
    ]
    for value in values:
        copy = roundtrip(value)
        assert type(copy) is type(value) and copy == value


def test_profile_with_shared_references_round_trips():
    profile = Profile(
        "p-1",
        customer_id="C1",
        device_ids={"d1", "d2"},
        viewed={"x": 3},
        cart=Cart(lines={"x": Line(1, 2.0)}, episode_open=True, deadline=99, device_id="d1"),
        campaigns={("s", "m", "n"): CampaignTouch(1, 2)},
    )
    graph = {"by_device": {"d1": profile, "d2": profile}}
    copy = roundtrip(graph)
    assert copy["by_device"]["d1"] == profile
    assert copy["by_device"]["d1"] is copy["by_device"]["d2"]  # one object, as before pickling


def test_refuses_a_class_it_cannot_rebuild():
    @dataclass
    class Derived:
        a: int
        b: int = field(init=False, default=0)

    with pytest.raises(TypeError, match="Derived"):
        pickled_as_fields(Derived)


def test_a_slots_pickle_of_an_earlier_build_still_loads(monkeypatch):
    """Snapshots written before compact pickling hold the dataclass's own state pickles."""
    profile = Profile("p-1", customer_id="C1", device_ids={"d1"}, cart=Cart(lines={"x": Line(1, 2.0)}))
    with monkeypatch.context() as m:
        for cls in (Profile, Cart, Line):
            m.delattr(cls, "__reduce__")
        old = pickle.dumps(profile, protocol=pickle.HIGHEST_PROTOCOL)
    assert old != pickle.dumps(profile, protocol=pickle.HIGHEST_PROTOCOL)
    assert pickle.loads(old) == profile


def test_timeline_of_an_earlier_build_loads_and_orders():
    """Earlier builds buffered `(order_key, seq, event)`; entries are now one flat tuple."""
    timeline = Timeline(lateness=0, idle_after=10_000)
    timeline.expect(["a"], 0)
    late_click = Click("e2", 20, "d", "page_view")
    early_change = CrmChange("c1", 10, "C1", "upsert")
    state = dict(vars(timeline))
    state["_buffer"] = [((20, 1, "e2"), 1, late_click), ((10, 0, "c1"), 2, early_change)]
    heapq.heapify(state["_buffer"])
    old = Timeline.__new__(Timeline)
    old.__setstate__(state)
    old.arrive("a", Click("e3", 15, "d", "page_view"), 0)
    old.end()
    assert [e.event_key for e in old.due()] == ["c1", "e3", "e2"]


def test_person_and_commands_round_trip():
    """Commands cross processes on every event; persons fill the resolution step's snapshot."""
    person = Person("p-1", customer_id="C1", device_ids={"d1"}, spans=[[1, 2]], order_ids={"O1"}, deadline=9)
    values = [
        person,
        Apply(Click("e1", 1, "d1", "page_view"), False, True),
        Ids("C1", None, ("d1", "d2")),
        AddVisit(1),
        MergeOut("p-2", 3),
        MergeIn("p-1", 3, 1),
        ReturnVisit("d1", 1, 2, 3),
        Deadline(4),
        Erase("C1"),
        Transfer("p-2", 3, Profile("p-1", visits=2)),
    ]
    for value in values:
        copy = roundtrip(value)
        assert type(copy) is type(value) and copy == value
