"""The site plan (controller.core.fanout): one data file per case in tests/data/fanout/, the
invariants as properties, and which site a device is in."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from controller.core.fanout import SiteDevice, live_sources, plan_site, site_of

CASES = sorted((Path(__file__).parents[1] / "data" / "fanout").glob("*.json"))


@pytest.mark.parametrize("path", CASES, ids=[p.stem for p in CASES])
def test_plan_case(path: Path) -> None:
    case = json.loads(path.read_text())
    plan = plan_site("s", case["members"], case["holders"], case["degree"])
    assert plan.seed == case["seed"], case["why"]
    assert dict(plan.parents) == case["parents"], case["why"]
    for name, sources in case["sources"].items():
        assert list(plan.sources(name)) == sources, f"{name}: {case['why']}"


def test_a_degree_below_one_is_refused() -> None:
    with pytest.raises(ValueError):
        plan_site("s", ["a", "b"], degree=0)


def test_only_started_devices_and_holders_are_live_sources() -> None:
    plan = plan_site("s", ["a", "b", "c", "d"], holders=["a"], degree=1)
    # d hangs from c, c from b; b has not started: d reads from c, then the holder
    assert live_sources(plan, "d", frozenset({"c"})) == ("c", "a")
    assert live_sources(plan, "d", frozenset()) == ("a",)
    seeded = plan_site("s", ["a", "b", "c"], degree=1)
    assert live_sources(seeded, "c", frozenset()) == ()  # the seed has not started either
    assert live_sources(seeded, "c", frozenset({"a"})) == ("a",)


names = st.lists(st.sampled_from("abcdefghijklmnop"), min_size=1, max_size=16, unique=True)


@given(names, st.data(), st.integers(min_value=1, max_value=5))
def test_every_plan_is_a_forest_in_order(members: list[str], data: st.DataObject,
                                         degree: int) -> None:
    holders = data.draw(st.lists(st.sampled_from(members), unique=True))
    plan = plan_site("s", members, holders, degree)
    assert sorted(plan.order) == sorted(members)
    position = {name: i for i, name in enumerate(plan.order)}
    assert set(plan.order[:len(holders)]) == set(holders)  # holders first
    assert plan.seed == ("" if holders else plan.order[0])
    for name in plan.order:
        parent = plan.parents[name]
        if parent:  # a device reads from one placed before it: no cycle, no wait on later
            assert position[parent] < position[name]
        assert len(plan.children(name)) <= degree
        chain = plan.ancestors(name)
        assert name not in chain and (not chain or not plan.parents[chain[-1]])
        sources = plan.sources(name)
        assert name not in sources and len(set(sources)) == len(sources)
        if name in holders or name == plan.seed:
            assert sources == ()
        else:  # the controller is never needed while the roots are alive
            assert sources and (sources[-1] in holders or plan.seed in sources)
            assert set(holders) <= set(sources)


@pytest.mark.parametrize(("labels", "address", "subnets", "site"), [
    ({"site": "berlin"}, "10.0.0.5", [], "berlin"),
    ({"site": "berlin"}, "10.0.0.5", ["10.0.0.0/24"], "berlin"),  # the label wins
    ({}, "10.0.0.5", ["10.0.1.0/24", "10.0.0.0/24"], "10.0.0.0/24"),
    ({}, "10.0.0.5", ["10.0.0.7/24"], "10.0.0.0/24"),  # named by the network
    ({"site": " "}, "10.0.0.5", [], ""),  # a blank label is no site
    ({}, "kiosk-3.local", ["10.0.0.0/24"], ""),  # a host name: only a label places it
    ({}, "fd00::5", ["fd00::/64"], "fd00::/64"),
    ({}, "fd00::5", ["10.0.0.0/8"], ""),
    ({"store": "7"}, "10.0.0.5", [], ""),  # another label key
])
def test_site_of(labels: dict[str, str], address: str, subnets: list[str], site: str) -> None:
    assert site_of(SiteDevice("d", address, labels), "site", subnets) == site


def test_site_of_reads_the_label_given() -> None:
    assert site_of(SiteDevice("d", "10.0.0.5", {"store": "7"}), "store", []) == "7"


def test_chunks_are_1_mib_up_to_16_gib_and_never_more_than_16384() -> None:
    from agent.peer_contract import MAX_CHUNKS, MIB, chunk_bytes_for, chunk_count

    assert chunk_bytes_for(39 * MIB) == MIB and chunk_bytes_for(16 * 1024 * MIB) == MIB
    assert chunk_bytes_for(16 * 1024 * MIB + 1) == 2 * MIB
    for size in (1, 5 * MIB, 31 * 1024 * MIB, 100 * 1024**3, 10**13):
        assert chunk_count(size, chunk_bytes_for(size)) <= MAX_CHUNKS
