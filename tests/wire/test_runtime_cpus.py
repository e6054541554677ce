"""A real agent keeps its own threads off the cores its runtime decodes on (agent.cpu_sets):
the CPU masks of the agent's threads and of its runtime worker, read from /proc."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from agent.cpu_sets import available_cpus, cpu_speeds, parse_cpu_list, plan_cpus
from tests.agent_process import AgentProcess

pytestmark = pytest.mark.skipif(
    not hasattr(os, "sched_getaffinity") or len(os.sched_getaffinity(0)) < 2,
    reason="needs Linux and at least 2 CPUs")


def _allowed(status: Path) -> frozenset[int]:
    for line in status.read_text().splitlines():
        if line.startswith("Cpus_allowed_list:"):
            return parse_cpu_list(line.split(":", 1)[1])
    raise AssertionError(f"no Cpus_allowed_list in {status}")


def _thread_masks(pid: int) -> set[frozenset[int]]:
    return {_allowed(t / "status") for t in Path(f"/proc/{pid}/task").iterdir()}


def _worker_pid(agent_pid: int) -> int:
    """The runtime worker: the agent's child started by multiprocessing's spawn (its resource
    tracker is a child too)."""
    for task in Path(f"/proc/{agent_pid}/task").iterdir():
        for child in (task / "children").read_text().split():
            if b"spawn_main" in Path(f"/proc/{child}/cmdline").read_bytes():
                return int(child)
    raise AssertionError("the agent has no runtime worker")


def _serve_one_model(agent: AgentProcess, model: Path) -> int:
    agent.start()
    agent.stage(model)
    with agent.client() as c:
        c.load_model(agent.load_request(model, "q4_k_m"))
        assert c.generate("hello", 4).summary.completion_tokens > 0
    assert agent.proc is not None
    return agent.proc.pid


def test_auto_runs_the_worker_on_the_fastest_core_and_the_agent_on_the_others(
        tmp_path: Path, ladder: dict[str, Path]) -> None:
    cpus = available_cpus()
    plan = plan_cpus(cpus, cpu_speeds(cpus), 1)  # --threads 1 (AgentProcess)
    assert len(plan.runtime) == 1 and plan.agent == cpus - plan.runtime
    agent = AgentProcess(tmp_path / "data", extra=("--runtime-cpus", "auto"))
    try:
        pid = _serve_one_model(agent, ladder["q4_k_m"])
        assert _thread_masks(_worker_pid(pid)) == {plan.runtime}
        assert _thread_masks(pid) == {plan.agent}  # every thread: gRPC's, the HTTP loop's...
        assert f"CPUs: {plan.reason}" in (agent.data_dir.parent / "data.log").read_text()
    finally:
        agent.stop()


def test_by_default_nothing_is_pinned(agent: AgentProcess, ladder: dict[str, Path]) -> None:
    pid = _serve_one_model(agent, ladder["q4_k_m"])
    cpus = available_cpus()
    assert _thread_masks(_worker_pid(pid)) == {cpus}
    assert _thread_masks(pid) == {cpus}
    assert "CPUs: off" in (agent.data_dir.parent / "data.log").read_text()


def test_cpus_the_agent_may_not_use_are_refused_in_one_line(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "agent.cli", "serve", "--listen", "127.0.0.1:0",
         "--data-dir", str(tmp_path / "data"), "--runtime-cpus", "4096"],
        capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert lines[-2].startswith("error: --runtime-cpus 4096: CPUs 4096 are not available to "
                                "the agent (it may use ")
    assert lines[-1].startswith("hint: use auto, off, or CPUs such as 2-3")
    assert "Traceback" not in result.stderr
