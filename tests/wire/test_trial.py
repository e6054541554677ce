"""Models on trial, against a real agent process: until the controller commits a new model, a
restart or a runtime crash sends the device back to its previous model by itself."""

from __future__ import annotations

import hashlib
import os
import signal
import time
from pathlib import Path

import pytest

from agent.contract import ErrorKind
from agent.failpoints import POINTS
from agent.rpc import agent_pb2 as pb
from controller.errors import AgentRefused, FleetError
from tests.agent_process import AgentProcess


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _load(a: AgentProcess, path: Path, variant: str, trial: bool = False) -> None:
    a.stage(path)
    request = a.load_request(path, variant)
    request.trial = trial
    with a.client() as c:
        c.load_model(request)


def _store(a: AgentProcess) -> pb.GetStoreResponse:
    with a.client() as c:
        return c.get_store()


def _serving(a: AgentProcess, seconds: float = 30.0) -> str:
    """The sha256 the agent generates with, once it does."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            with a.client() as c:
                result = c.generate("hello", 3)
            assert result.summary.completion_tokens > 0
            return result.summary.sha256
        except FleetError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def _power_cut(a: AgentProcess) -> None:
    assert a.proc is not None
    os.killpg(a.proc.pid, signal.SIGKILL)  # agent and worker gone at once
    a.wait_exit()


def test_a_restart_during_the_trial_goes_back_to_the_previous_model(
        agent: AgentProcess, ladder: dict[str, Path]) -> None:
    agent.start()
    _load(agent, ladder["q2_k"], "q2_k")
    _load(agent, ladder["q4_k_m"], "q4_k_m", trial=True)
    assert _serving(agent) == _sha(ladder["q4_k_m"])
    store = _store(agent)
    assert store.active_on_trial and store.previous_sha256 == _sha(ladder["q2_k"])
    _power_cut(agent)
    agent.start()  # no controller: the agent decides
    assert _serving(agent) == _sha(ladder["q2_k"])
    store = _store(agent)
    assert store.active_sha256 == _sha(ladder["q2_k"]) and not store.active_on_trial
    assert store.reverted_sha256 == _sha(ladder["q4_k_m"])
    assert "restarted" in store.reverted_reason


def test_a_committed_model_stays_after_a_restart(agent: AgentProcess,
                                                 ladder: dict[str, Path]) -> None:
    agent.start()
    _load(agent, ladder["q2_k"], "q2_k")
    _load(agent, ladder["q4_k_m"], "q4_k_m", trial=True)
    with agent.client() as c:
        c.commit_model(_sha(ladder["q4_k_m"]))
    assert not _store(agent).active_on_trial
    _power_cut(agent)
    agent.start()
    assert _serving(agent) == _sha(ladder["q4_k_m"])
    assert _store(agent).reverted_sha256 == ""


def test_a_runtime_crash_during_the_trial_goes_back_to_the_previous_model(
        agent: AgentProcess, ladder: dict[str, Path]) -> None:
    agent.start()  # the agent's watcher notices the crash, no request needed
    _load(agent, ladder["q2_k"], "q2_k")
    _load(agent, ladder["q4_k_m"], "q4_k_m", trial=True)
    with agent.client() as c:
        worker = next(m.worker_pid for m in c.list_models() if m.active)
    os.kill(worker, signal.SIGSEGV)
    assert agent.proc is not None and agent.proc.poll() is None  # the agent lives on
    assert _serving(agent) == _sha(ladder["q2_k"])
    store = _store(agent)
    assert store.reverted_sha256 == _sha(ladder["q4_k_m"]) and "crashed" in store.reverted_reason
    # the given-up model is never a rollback target
    assert store.previous_sha256 == ""


def test_a_first_model_on_trial_goes_back_to_no_model(agent: AgentProcess,
                                                      ladder: dict[str, Path]) -> None:
    agent.start()
    _load(agent, ladder["q2_k"], "q2_k", trial=True)
    _power_cut(agent)
    agent.start()
    with agent.client() as c:
        assert [m for m in c.list_models() if m.active] == []
        with pytest.raises(AgentRefused):
            c.generate("hello", 3)
    assert _store(agent).reverted_sha256 == _sha(ladder["q2_k"])


def test_only_the_active_model_can_be_committed(agent: AgentProcess,
                                                ladder: dict[str, Path]) -> None:
    agent.start()
    _load(agent, ladder["q2_k"], "q2_k", trial=True)
    with agent.client() as c, pytest.raises(AgentRefused) as info:
        c.commit_model(_sha(ladder["q4_k_m"]))
    assert info.value.code == "NOT_FOUND"
    assert _store(agent).active_on_trial


@pytest.mark.parametrize("point", POINTS)
def test_kill_9_anywhere_in_a_trial_load_leaves_the_old_model(
        tmp_path: Path, ladder: dict[str, Path], point: str) -> None:
    a = AgentProcess(tmp_path / "data").start()
    try:
        _load(a, ladder["q2_k"], "q2_k")
        a.stop()
        a.start(failpoints=point)
        with pytest.raises(FleetError):
            _load(a, ladder["q4_k_m"], "q4_k_m", trial=True)
        assert a.wait_exit() == -signal.SIGKILL
        a.start(failpoints="")
        assert _serving(a) == _sha(ladder["q2_k"])
    finally:
        a.stop()


def test_a_trial_past_its_deadline_is_given_up_by_the_agent_itself(
        agent: AgentProcess, ladder: dict[str, Path]) -> None:
    agent.start()
    _load(agent, ladder["q8_0"], "q8_0")
    agent.stage(ladder["q4_k_m"])
    request = agent.load_request(ladder["q4_k_m"], "q4_k_m")
    request.trial, request.trial_seconds = True, 2
    with agent.client() as c:
        c.load_model(request)
        store = c.get_store()
    assert store.active_on_trial and 0 < store.trial_seconds_left <= 2
    # nobody commits: the watcher gives it up once the deadline passes (bounded wait)
    deadline = time.monotonic() + 30
    while _store(agent).active_on_trial:
        assert time.monotonic() < deadline
        time.sleep(0.2)
    store = _store(agent)
    assert store.active_sha256 == _sha(ladder["q8_0"])
    assert store.reverted_sha256 == _sha(ladder["q4_k_m"])
    assert store.reverted_cause == pb.REVERT_CAUSE_DEADLINE
    assert "deadline" in store.reverted_reason
    assert _serving(agent) == _sha(ladder["q8_0"])
    # a commit after the deadline is refused: the model is no longer on trial
    with agent.client() as c, pytest.raises(AgentRefused) as late:
        c.commit_model(_sha(ladder["q4_k_m"]))
    assert late.value.code == "NOT_FOUND"


def test_abort_trial_goes_back_to_the_agents_own_previous_model(
        agent: AgentProcess, ladder: dict[str, Path]) -> None:
    agent.start()
    _load(agent, ladder["q8_0"], "q8_0")
    _load(agent, ladder["q2_k"], "q2_k", trial=True)
    with agent.client() as c:
        restored = c.abort_trial(_sha(ladder["q2_k"]), "health check failed: test")
        assert restored is not None and restored.variant == "q8_0" and restored.worker_pid
        store = c.get_store()
        assert store.active_sha256 == _sha(ladder["q8_0"]) and not store.active_on_trial
        assert store.reverted_cause == pb.REVERT_CAUSE_ABORTED
        assert store.reverted_reason == "health check failed: test"
        # aborting what is not on trial is refused with its kind, and changes nothing
        with pytest.raises(AgentRefused) as refused:
            c.abort_trial(_sha(ladder["q8_0"]), "again")
        assert refused.value.kind is ErrorKind.NOT_ON_TRIAL
        assert refused.value.code == "FAILED_PRECONDITION"
    assert _serving(agent) == _sha(ladder["q8_0"])
