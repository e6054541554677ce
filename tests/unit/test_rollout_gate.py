"""The rollout gate (pure): canaries per artifact, replacement of canaries that gave no
evidence, the halt after too many model failures."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from controller.core.rollout import Evidence, RolloutGate, RolloutPolicy, failure_budget


def test_one_canary_per_artifact_then_the_rest() -> None:
    gate = RolloutGate(["q4", "q4", "q8", "q4", "q8"], RolloutPolicy(canary=1))
    assert gate.startable() == [0, 2]  # the first device of each artifact
    gate.start(0)
    gate.start(2)
    assert gate.startable() == []
    gate.finish(0, Evidence.HEALTHY)
    assert gate.startable() == [1, 3]  # q4 vouched for; q8 still on its canary
    gate.finish(2, Evidence.HEALTHY)
    assert gate.startable() == [1, 3, 4]


def test_a_canary_that_gave_no_evidence_is_replaced_by_the_next_device() -> None:
    gate = RolloutGate(["a", "a", "a"], RolloutPolicy(canary=1))
    gate.start(0)
    gate.finish(0, Evidence.NONE)  # unreachable: says nothing about the model
    assert gate.startable() == [1]
    assert not gate.halted


def test_a_model_failure_halts_new_starts_but_not_uncontacted_devices() -> None:
    gate = RolloutGate(["a", "", "a", "b"], RolloutPolicy(canary=1, max_failures=1))
    assert gate.startable() == [0, 1, 3]
    for i in (0, 1, 3):
        gate.start(i)
    gate.finish(0, Evidence.MODEL_FAILED)
    assert gate.halted
    assert gate.startable() == []
    gate.finish(3, Evidence.HEALTHY)  # what was running finishes
    assert gate.startable() == []
    assert gate.waiting() == [2]


def test_no_canary_and_no_halt() -> None:
    gate = RolloutGate(["a", "a", "a"], RolloutPolicy(canary=0, max_failures=0))
    assert gate.startable() == [0, 1, 2]
    for i in range(3):
        gate.start(i)
        gate.finish(i, Evidence.MODEL_FAILED)
    assert not gate.halted


def test_two_canaries_run_together() -> None:
    gate = RolloutGate(["a"] * 5, RolloutPolicy(canary=2, max_failures=2))
    assert gate.startable() == [0, 1]
    gate.start(0)
    gate.start(1)
    gate.finish(0, Evidence.MODEL_FAILED)
    assert not gate.halted
    assert gate.startable() == [2]  # a failed canary is replaced until the budget is spent
    gate.start(2)
    gate.finish(1, Evidence.HEALTHY)
    gate.finish(2, Evidence.HEALTHY)
    assert gate.startable() == [3, 4]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from(["a", "b", ""]), max_size=12),
       st.integers(0, 3), st.integers(0, 3),
       st.lists(st.sampled_from(list(Evidence)), min_size=12, max_size=12))
def test_every_device_starts_at_most_once_and_all_start_unless_halted(
        artifacts: list[str], canary: int, max_failures: int, evidence: list[Evidence]) -> None:
    gate = RolloutGate(artifacts, RolloutPolicy(canary, max_failures))
    started: list[int] = []
    for _ in range(len(artifacts) + 1):  # bounded: at least one device finishes per round
        ready = gate.startable()
        if not ready:
            break
        for i in ready:
            gate.start(i)
            started.append(i)
        for i in ready:  # a device that is never contacted gives no evidence
            gate.finish(i, evidence[i] if artifacts[i] else Evidence.NONE)
    assert len(started) == len(set(started))
    if not gate.halted:
        assert sorted(started) == list(range(len(artifacts)))
    else:
        failures = [i for i in started if evidence[i] is Evidence.MODEL_FAILED
                    and artifacts[i]]
        assert len(failures) >= max_failures > 0
        assert all(artifacts[i] for i in gate.waiting())  # the uncontacted always ran



def test_failure_budget_as_count_or_share() -> None:
    assert failure_budget("3", 100) == 3
    assert failure_budget("0", 100) == 0
    assert failure_budget("10%", 100) == 10
    assert failure_budget("10%", 7) == 1  # rounded up, at least one
    assert failure_budget("25%", 10) == 3
    assert failure_budget("0%", 10) == 0
    for bad in ("", "x", "-1", "150%", "1.5"):
        with pytest.raises(ValueError):
            failure_budget(bad, 10)
