"""The runner over in-memory ports: waves with their own failure budget, approval pauses,
unreachable devices retried, abort, Ctrl-C, a lost takeover, and leases."""

from __future__ import annotations

import pytest

from agent.contract import ErrorKind
from controller.core import waves
from controller.core.steps import Step
from controller.services.ports import Artifact, DeviceJob, DevicesBusy, ModelView, Rollout
from controller.services.rollout_runner import Policy, Runner
from tests.unit.fakes import FakeDevice, FakeFleet, MemoryRolloutLog, refused

A = Artifact("m", "q4", "gguf", "a" * 64, 100, "/a")
B = Artifact("m", "q8", "gguf", "b" * 64, 200, "/b")
OLD = ModelView("m", "old", "c" * 64)


def _setup(n: int, spec: str = "", artifacts: list[Artifact] | None = None,
           **policy: object) -> tuple[Runner, FakeFleet, MemoryRolloutLog]:
    devices = [FakeDevice(f"d{i}", active=OLD, blobs={OLD.sha256}) for i in range(n)]
    fleet = FakeFleet(devices)
    jobs = [DeviceJob(f"d{i}", i, 0, Step.PLANNED, (artifacts or [A])[i % len(artifacts or [A])],
                      choice="fits") for i in range(n)]
    for wave, members in enumerate(waves.assign(list(range(n)), spec)):
        for i in members:
            jobs[i].wave = wave
    log = MemoryRolloutLog()
    rollout = Rollout("r1", "m", "running", {}, waves.sizes(spec, n), controller="me")
    log.create(rollout, jobs)
    runner = Runner(log, fleet.connect, rollout, jobs, Policy(**policy),  # type: ignore[arg-type]
                    sleep=lambda s: None)
    return runner, fleet, log


def _steps(runner: Runner) -> list[str]:
    return [j.step.value for j in runner.jobs]


def test_wave_sizes() -> None:
    assert waves.sizes("1,10%,50%,100%", 20) == [1, 1, 8, 10]
    assert waves.sizes("1,10%,50%,100%", 3) == [1, 1, 1]
    assert waves.sizes("2,50%", 10) == [2, 3, 5]  # the last wave always takes the rest
    assert waves.sizes("", 4) == [4]
    for bad in ("0", "x", "150%", "1,,2"):
        with pytest.raises(ValueError):
            waves.parse(bad)


def test_a_failure_in_wave_two_halts_the_rest_and_wave_one_stays() -> None:
    runner, fleet, log = _setup(6, "1,2,100%")  # waves of 1, 1, 4 devices
    fleet.devices["d1"].fail["load"] = [refused(ErrorKind.NOT_FOR_THIS_MACHINE, "bad")]
    ended = runner.run()
    assert ended.status == "halted"
    assert _steps(runner) == ["committed", "failed"] + ["halted"] * 4
    assert all("failed on d1" in j.reason for j in runner.jobs[2:])
    assert all(fleet.devices[f"d{i}"].calls == [] for i in range(2, 6))  # never contacted
    assert log.leases == {}  # a halted rollout holds nothing


def test_the_failure_budget_is_per_wave() -> None:
    runner, fleet, _ = _setup(5, "1,100%", max_failures="1", canary=0)
    fleet.devices["d0"].tokens = 0  # wave 1's only device rolls back ...
    ended = runner.run()
    assert ended.status == "halted" and _steps(runner) == ["rolled-back"] + ["halted"] * 4


def test_canaries_per_file_inside_a_wave() -> None:
    runner, fleet, _ = _setup(4, "", artifacts=[A, B], canary=1)
    fleet.devices["d1"].fail["load"] = [refused(ErrorKind.WORKER_FAILED, "crash")]
    ended = runner.run()
    # B's canary (d1) failed: d3 (also B) halts; A's devices all went
    assert _steps(runner) == ["committed", "failed", "committed", "halted"]
    assert ended.status == "halted"


def test_wait_approval_pauses_before_the_next_wave_then_continue_goes_on() -> None:
    runner, fleet, log = _setup(3, "1,100%", wait_approval=True)
    ended = runner.run()
    assert ended.status == "paused" and _steps(runner) == ["committed", "planned", "planned"]
    assert set(log.leases) == {"d1", "d2"}  # still held for the rest of the rollout
    rollout, jobs = log.load("r1")
    again = Runner(log, fleet.connect, Rollout(**{**rollout.__dict__, "approved_wave": 1,
                                                  "status": "running"}), jobs,
                   Policy(wait_approval=True), sleep=lambda s: None)
    assert again.run().status == "completed"
    assert [j.step.value for j in again.jobs] == ["committed"] * 3


def test_an_unreachable_device_is_pending_and_wait_picks_it_up() -> None:
    runner, fleet, log = _setup(2, "", wait_s=60.0)
    fleet.away.add("d1")
    runner.sleep = lambda s: fleet.away.clear()  # it comes back while we wait
    ended = runner.run()
    assert ended.status == "completed" and _steps(runner) == ["committed", "committed"]
    assert ("d1", "pending") in log.history


def test_without_wait_a_pending_device_keeps_its_lease_for_resume() -> None:
    runner, fleet, log = _setup(2)
    fleet.away.add("d1")
    ended = runner.run()
    assert ended.status == "pending" and _steps(runner) == ["committed", "pending"]
    assert log.leases == {"d1": "r1"}


def test_abort_requested_rolls_back_what_is_checking_and_halts_the_rest() -> None:
    runner, fleet, log = _setup(3, canary=1)
    log.rollouts["r1"].abort_requested = True
    ended = runner.run()
    assert ended.status == "aborted"
    assert _steps(runner) == ["halted"] * 3 and log.leases == {}


def test_ctrl_c_leaves_the_rest_planned_and_the_rollout_resumable() -> None:
    runner, fleet, log = _setup(3, canary=1, concurrency=1)
    original = fleet.devices["d0"].commit

    def commit_then_ctrl_c(sha256: str) -> None:
        original(sha256)
        runner.stopped.set()

    fleet.devices["d0"].commit = commit_then_ctrl_c  # type: ignore[method-assign]
    ended = runner.run()
    assert ended.status == "interrupted"
    assert _steps(runner) == ["committed", "planned", "planned"]
    assert "interrupted" in runner.jobs[1].reason and set(log.leases) == {"d1", "d2"}


def test_a_second_rollout_on_the_same_devices_is_refused_with_the_holder() -> None:
    _, _, log = _setup(2)
    with pytest.raises(DevicesBusy) as busy:
        log.create(Rollout("r2", "m", "running", {}, [2]),
                   [DeviceJob("d1", 0, 0, Step.PLANNED, A)])
    assert busy.value.holders == {"d1": "r1"}


def test_a_wave_that_served_badly_stops_the_next_one() -> None:
    from controller.core.gates import WaveGates

    runner, fleet, log = _setup(3, "1,100%", wave_pause_s=5.0,
                                wave_gates=WaveGates(max_p95_ttft_ms=100))
    judged: list[list[str]] = []

    def judge(devices: list[str]) -> tuple[str, str]:
        judged.append(devices)
        return "d0 p95 TTFT 812 ms > --wave-max-p95-ttft 100 (40 requests)", ""

    runner.judge_wave = judge
    clock = [0.0]
    from datetime import datetime, timedelta, timezone

    start = datetime(2026, 1, 1, tzinfo=timezone.utc)
    runner.now = lambda: start + timedelta(seconds=clock[0])
    runner.sleep = lambda s: clock.__setitem__(0, clock[0] + s)
    ended = runner.run()
    assert judged == [["d0"]]  # the first wave's device, after the pause
    assert clock[0] >= 5.0
    assert ended.status == "halted" and _steps(runner) == ["committed", "halted", "halted"]
    assert "missed a wave gate: d0 p95 TTFT 812 ms" in runner.jobs[1].reason
