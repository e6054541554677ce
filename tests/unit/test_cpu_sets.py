"""Which CPUs the runtimes get and which the agent keeps (agent.cpu_sets): the pure plan, and
reading each CPU's speed from a sysfs tree."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.cpu_sets import cpu_speeds, describe, parse_cpu_list, plan_cpus

TWO = frozenset({0, 1})
RK3588 = frozenset(range(8))
# RK3588: four Cortex-A55 (cpu0-3) and four Cortex-A76 (cpu4-7), as the kernel rates them
RK3588_CAPACITY = {0: 414.0, 1: 414.0, 2: 414.0, 3: 414.0,
                   4: 1024.0, 5: 1024.0, 6: 1024.0, 7: 1024.0}


@pytest.mark.parametrize(("cpus", "speed", "threads", "runtime", "agent"), [
    (TWO, {}, 1, {1}, {0}),  # equal cores: the higher-numbered one
    (TWO, {0: 3000.0, 1: 2000.0}, 1, {0}, {1}),  # the faster one, wherever it is
    (RK3588, RK3588_CAPACITY, 4, {4, 5, 6, 7}, {0, 1, 2, 3}),  # the big cores
    (RK3588, RK3588_CAPACITY, 2, {6, 7}, {0, 1, 2, 3, 4, 5}),
    (frozenset({2, 3, 5}), {}, 2, {3, 5}, {2}),  # a container's cpuset, with gaps
])
def test_auto_gives_the_runtime_the_fastest_cores_and_the_agent_the_rest(
        cpus: frozenset[int], speed: dict[int, float], threads: int, runtime: set[int],
        agent: set[int]) -> None:
    plan = plan_cpus(cpus, speed, threads)
    assert (plan.runtime, plan.agent) == (runtime, agent)
    assert plan.pinned
    assert describe(plan.runtime) in plan.reason


@pytest.mark.parametrize("threads", [2, 3, 8])
def test_a_runtime_using_every_core_pins_nothing(threads: int) -> None:
    plan = plan_cpus(TWO, {}, threads)
    assert not plan.pinned and not plan.agent
    assert "all 2 CPUs" in plan.reason


def test_off_pins_nothing() -> None:
    plan = plan_cpus(RK3588, RK3588_CAPACITY, 1, "off")
    assert not plan.pinned and not plan.agent


def test_a_list_is_the_runtime_and_the_agent_gets_the_rest() -> None:
    plan = plan_cpus(RK3588, RK3588_CAPACITY, 4, "0-1,3")
    assert plan.runtime == {0, 1, 3}
    assert plan.agent == {2, 4, 5, 6, 7}
    assert "0-1,3" in plan.reason and "2,4-7" in plan.reason
    every = plan_cpus(TWO, {}, 1, "0-1")
    assert every.runtime == TWO and not every.agent  # nothing left: the agent is not pinned


def test_a_list_outside_the_available_cpus_is_refused() -> None:
    with pytest.raises(ValueError, match="CPUs 4-5 are not available"):
        plan_cpus(frozenset(range(4)), {}, 1, "2-5")


@pytest.mark.parametrize("text", ["", "a", "3-1", "-1", "1,,2", "1-", "2-3x"])
def test_a_malformed_cpu_list_is_refused(text: str) -> None:
    with pytest.raises(ValueError, match="is not a CPU list"):
        parse_cpu_list(text)


def test_cpu_list_round_trip() -> None:
    assert parse_cpu_list("0-2,5, 7-8") == {0, 1, 2, 5, 7, 8}
    assert describe(frozenset({0, 1, 2, 5, 7, 8})) == "0-2,5,7-8"


def test_speeds_come_from_capacity_then_max_clock(tmp_path: Path) -> None:
    (tmp_path / "cpu0").mkdir()
    (tmp_path / "cpu0" / "cpu_capacity").write_text("414\n")
    (tmp_path / "cpu1" / "cpufreq").mkdir(parents=True)
    (tmp_path / "cpu1" / "cpufreq" / "cpuinfo_max_freq").write_text("2400000\n")
    (tmp_path / "cpu2").mkdir()  # a VM's CPU: neither file
    assert cpu_speeds(frozenset({0, 1, 2}), tmp_path) == {0: 414.0, 1: 2400000.0}
