"""The pure choice of which resident models to unload so another one fits (agent.eviction)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from agent.eviction import MIB, Resident, RoomPlan, holders, plan_room


def _r(name: str, mib: int, used: float, **kw: bool) -> Resident:
    return Resident(name, mib * MIB, used, **kw)


def test_room_to_spare_loads_beside_everything() -> None:
    assert plan_room(100 * MIB, 1000 * MIB, [_r("a", 300, 1), _r("b", 300, 2)], "c") == \
        RoomPlan((), hand_over=True)


def test_the_least_recently_used_goes_first_and_only_as_many_as_needed() -> None:
    residents = [_r("a", 300, 5), _r("b", 300, 1), _r("c", 300, 3)]
    assert plan_room(300 * MIB, 1000 * MIB, residents, "d") == RoomPlan(("b",), True)
    assert plan_room(600 * MIB, 1000 * MIB, residents, "d") == RoomPlan(("b", "c"), True)


def test_pinned_on_trial_and_busy_models_stay() -> None:
    residents = [_r("a", 300, 1, pinned=True), _r("b", 300, 2, on_trial=True),
                 _r("c", 300, 3, busy=True), _r("d", 50, 9)]
    assert plan_room(100 * MIB, 1000 * MIB, residents, "e") == RoomPlan(("d",), True)
    assert plan_room(300 * MIB, 1000 * MIB, residents, "e") is None
    said = holders(residents, "e")
    assert "a (~300 MiB, pinned)" in said and "b (~300 MiB, on trial)" in said
    assert "c (~300 MiB, serving a request)" in said and "d (" not in said


def test_the_slot_own_old_model_is_stopped_before_anything_is_evicted() -> None:
    # a new variant of "a": stop-then-load in its slot needs no eviction of "b"
    residents = [_r("a", 400, 9), _r("b", 400, 1)]
    assert plan_room(500 * MIB, 1000 * MIB, residents, "a") == RoomPlan((), hand_over=False)
    assert plan_room(700 * MIB, 1000 * MIB, residents, "a") == RoomPlan(("b",), False)
    # others are unloaded only when stopping its own old model is not enough either
    residents = [_r("a", 100, 9), _r("b", 600, 1)]
    assert plan_room(450 * MIB, 1000 * MIB, residents, "a") == RoomPlan(("b",), True)


def test_nothing_unloadable_and_no_room_is_a_refusal_naming_nobody_when_empty() -> None:
    assert plan_room(2000 * MIB, 1000 * MIB, [], "a") is None
    assert holders([], "a") == ""


@st.composite
def _cases(draw: st.DrawFn) -> tuple[int, int, list[Resident]]:
    n = draw(st.integers(0, 6))
    residents = [Resident(f"m{i}", draw(st.integers(1, 500)), draw(st.floats(0, 100)),
                          pinned=draw(st.booleans()), on_trial=draw(st.booleans()),
                          busy=draw(st.booleans())) for i in range(n)]
    return draw(st.integers(1, 1500)), draw(st.integers(1, 2000)), residents


@given(_cases())
def test_a_plan_fits_and_never_touches_what_must_stay(case: tuple[int, int, list[Resident]]
                                                      ) -> None:
    need, budget, residents = case
    plan = plan_room(need, budget, residents, "m0")
    by_name = {r.name: r for r in residents}
    unloadable = [r for r in residents if r.name != "m0" and not r.why_kept]
    if plan is None:
        # even unloading every model that may go leaves too little
        own = sum(r.memory_bytes for r in residents if r.name == "m0")
        kept = sum(r.memory_bytes for r in residents) - sum(r.memory_bytes for r in unloadable)
        assert need > budget - kept + own
        return
    assert all(not by_name[n].why_kept and n != "m0" for n in plan.evict)
    left = sum(r.memory_bytes for r in residents if r.name not in plan.evict)
    own = sum(r.memory_bytes for r in residents if r.name == "m0")
    assert need + left - (0 if plan.hand_over else own) <= budget
    # least recently used first: nothing unloaded was used after something kept
    kept_times = [r.last_used for r in unloadable if r.name not in plan.evict]
    assert all(by_name[n].last_used <= min(kept_times, default=1e9) for n in plan.evict)


def test_the_preflight_judges_memory_against_what_stays_loaded() -> None:
    """CheckFit's memory answer (agent.preflight.memory_refusal) before a byte is sent."""
    from agent.preflight import memory_refusal

    residents = [_r("a", 600, 1, pinned=True), _r("b", 300, 2, busy=True),
                 _r("m", 400, 3)]
    # b is busy now but will have finished when the blob has arrived; m's own memory is
    # freed by stopping it first
    assert memory_refusal(900 * MIB, 1500 * MIB, "m", residents) == ""
    refusal = memory_refusal(1000 * MIB, 1500 * MIB, "m", residents)
    assert refusal == ("memory: needs ~1,000 MiB beside what stays loaded (budget 1,500 MiB, "
                       "1,300 MiB in use, held by a (~600 MiB, pinned)): unpin it, or deploy "
                       "with --replace")
    assert memory_refusal(1600 * MIB, 1500 * MIB, "m", []) == (
        "memory: needs ~1,600 MiB, budget 1,500 MiB")
    assert memory_refusal(1400 * MIB, 1500 * MIB, "", []) == ""  # no slot named: the budget


def test_keeping_the_slots_model_allows_only_loads_beside_it() -> None:
    """An adapter joins its base: the base is never stopped to make its room."""
    residents = [_r("base", 600, 5), _r("other", 300, 1)]
    # a model load would stop the slot's old model first rather than unload another
    assert plan_room(200 * MIB, 1000 * MIB, residents, "base") == RoomPlan((), False)
    assert plan_room(200 * MIB, 1000 * MIB, residents, "base", keep_slot=True) == \
        RoomPlan(("other",), True)
    assert plan_room(500 * MIB, 1000 * MIB, residents, "base") == RoomPlan((), False)
    assert plan_room(500 * MIB, 1000 * MIB, residents, "base", keep_slot=True) is None
