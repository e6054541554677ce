"""The agent never bricks a device: one test per failure, against a real agent process."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import time
from pathlib import Path

import pytest

from agent.failpoints import POINTS
from controller.errors import AgentRefused, FleetError
from tests.agent_process import AgentProcess


def _generate_ok(a: AgentProcess) -> str:
    with a.client() as c:
        result = c.generate("hello", 4)
    assert result.summary.completion_tokens > 0
    return result.summary.sha256


def _wait_generate_ok(a: AgentProcess, seconds: float = 30.0) -> str:
    deadline = time.monotonic() + seconds
    while True:
        try:
            return _generate_ok(a)
        except FleetError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def _load(a: AgentProcess, path: Path, variant: str, estimate: int = 0) -> None:
    a.stage(path)
    with a.client() as c:
        c.load_model(a.load_request(path, variant, estimate))


def test_checksum_mismatch_is_data_loss_and_the_old_model_stays(
        agent: AgentProcess, ladder: dict[str, Path]) -> None:
    agent.start()
    _load(agent, ladder["q2_k"], "q2_k")
    good = ladder["q4_k_m"]
    digest = hashlib.sha256(good.read_bytes()).hexdigest()
    staged = agent.data_dir / "store" / "incoming" / digest
    data = bytearray(good.read_bytes())
    data[1000] ^= 0x55
    staged.write_bytes(bytes(data))
    with agent.client() as c, pytest.raises(AgentRefused) as info:
        c.load_model(agent.load_request(good, "q4_k_m"))
    assert info.value.code == "DATA_LOSS"
    assert not staged.exists()
    assert _generate_ok(agent) == hashlib.sha256(ladder["q2_k"].read_bytes()).hexdigest()


def test_memory_guard_refuses_with_numbers(tmp_path: Path, ladder: dict[str, Path]) -> None:
    a = AgentProcess(tmp_path / "data", emulate="lab-pi4-2gb").start()
    try:
        a.stage(ladder["f16"])
        with a.client() as c, pytest.raises(AgentRefused) as info:
            c.load_model(a.load_request(ladder["f16"], "f16", estimate=145 * 2**20))
        assert info.value.code == "RESOURCE_EXHAUSTED"
        assert "145 MiB" in info.value.message and "budget is 92 MiB" in info.value.message
        with a.client() as c:
            assert c.list_models() == []
    finally:
        a.stop()


def test_a_file_the_runtime_cannot_load_is_failed_precondition(
        agent: AgentProcess, tmp_path: Path) -> None:
    agent.start()
    junk = tmp_path / "junk.gguf"
    junk.write_bytes(b"GGUF" + os.urandom(4096))
    agent.stage(junk)
    with agent.client() as c, pytest.raises(AgentRefused) as info:
        c.load_model(agent.load_request(junk, "junk"))
    assert info.value.code == "FAILED_PRECONDITION"
    assert "runtime refused the model" in info.value.message


def test_runtime_segfault_does_not_take_the_agent_down(
        agent: AgentProcess, ladder: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLEET_AGENT_WATCH_S", "0")  # the request, not the watcher, notices
    agent.start()
    _load(agent, ladder["q2_k"], "q2_k")
    with agent.client() as c:
        first = [m.worker_pid for m in c.list_models() if m.active][0]
    os.kill(first, signal.SIGSEGV)
    with agent.client() as c, pytest.raises(AgentRefused) as info:
        c.generate("hello", 4)
    assert info.value.code == "UNAVAILABLE" and "crashed" in info.value.message
    assert agent.proc is not None and agent.proc.poll() is None  # the agent lives on
    _wait_generate_ok(agent)  # restarted on the last good model
    with agent.client() as c:
        second = [m.worker_pid for m in c.list_models() if m.active][0]
        assert c.telemetry().sample.worker_crashes == 1
    assert second != first


def test_an_idle_runtime_crash_is_noticed_without_a_request(agent: AgentProcess,
                                                           ladder: dict[str, Path]) -> None:
    agent.start()
    _load(agent, ladder["q2_k"], "q2_k")
    with agent.client() as c:
        first = [m.worker_pid for m in c.list_models() if m.active][0]
    os.kill(first, signal.SIGKILL)  # as the OOM killer does
    deadline = time.monotonic() + 30
    while True:  # only reads: ListModels and telemetry, never a generation
        with agent.client() as c:
            pids = [m.worker_pid for m in c.list_models() if m.active and m.worker_pid]
            crashes = c.telemetry().sample.worker_crashes
        if pids and pids[0] != first:
            break
        assert time.monotonic() < deadline, "the crashed worker was never restarted"
        time.sleep(0.2)
    assert crashes == 1
    assert _generate_ok(agent) == hashlib.sha256(ladder["q2_k"].read_bytes()).hexdigest()


def test_restart_restores_the_model_with_no_controller(agent: AgentProcess,
                                                       ladder: dict[str, Path]) -> None:
    agent.start()
    _load(agent, ladder["q4_k_m"], "q4_k_m")
    assert agent.proc is not None
    os.killpg(agent.proc.pid, signal.SIGKILL)  # power cut: agent and worker gone
    agent.wait_exit()
    agent.start()  # nobody calls LoadModel: the agent restores its desired state
    expected = hashlib.sha256(ladder["q4_k_m"].read_bytes()).hexdigest()
    assert _wait_generate_ok(agent) == expected


@pytest.mark.parametrize("point", POINTS)
def test_kill_9_during_activation_leaves_old_or_new(tmp_path: Path, ladder: dict[str, Path],
                                                     point: str) -> None:
    a = AgentProcess(tmp_path / "data").start()
    old = hashlib.sha256(ladder["q2_k"].read_bytes()).hexdigest()
    new = hashlib.sha256(ladder["q4_k_m"].read_bytes()).hexdigest()
    try:
        _load(a, ladder["q2_k"], "q2_k")
        a.stop()
        a.start(failpoints=point)
        with pytest.raises(FleetError):
            _load(a, ladder["q4_k_m"], "q4_k_m")
        assert a.wait_exit() == -signal.SIGKILL
        a.start(failpoints="")
        state = json.loads((a.data_dir / "store" / "state.json").read_text())
        assert state["active"]["sha256"] in (old, new)
        active = _wait_generate_ok(a)
        assert active == state["active"]["sha256"]
        blobs = set(os.listdir(a.data_dir / "store" / "blobs"))
        assert active in blobs
        if point.startswith("activate.after"):
            assert active == new
        if point.startswith(("verify", "load")):
            assert active == old
    finally:
        a.stop()


@pytest.mark.parametrize(("profile", "strategy"), [("lab-n100-16gb", "hand-over"),
                                                   ("lab-pi5-8gb", "stop-then-load")])
def test_swap_strategy_follows_memory(tmp_path: Path, ladder: dict[str, Path], profile: str,
                                      strategy: str) -> None:
    a = AgentProcess(tmp_path / "data", emulate=profile).start()
    try:
        for variant, mib in (("q2_k", 86), ("q4_k_m", 94)):
            a.stage(ladder[variant])
            with a.client() as c:
                response = c.load_model(a.load_request(ladder[variant], variant, mib * 2**20))
        # 86 + 94 MiB fit the 192 MiB budget side by side, not the 104 MiB one
        assert response.swap_strategy == strategy
        assert _generate_ok(a)
    finally:
        a.stop()


def test_cancelled_generation_stops_the_runtime(agent: AgentProcess,
                                                ladder: dict[str, Path]) -> None:
    agent.start()
    _load(agent, ladder["q2_k"], "q2_k")
    with agent.client() as c:
        stream = c.stream("The edge device", max_tokens=1500, timeout=120)
        first = next(iter(stream))
        assert first.text is not None
        stream.cancel()
    deadline = time.monotonic() + 30
    while True:
        with agent.client() as c:
            records = list(c.telemetry().records)
        if records or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert records[-1].outcome == "cancelled"
    assert 0 < records[-1].completion_tokens < 1500
    assert _generate_ok(agent)  # the worker is clean for the next request


def test_telemetry_survives_restart_and_reads_by_cursor(agent: AgentProcess,
                                                        ladder: dict[str, Path]) -> None:
    agent.start()
    _load(agent, ladder["q2_k"], "q2_k")
    for _ in range(3):
        _generate_ok(agent)
    with agent.client() as c:
        page = c.telemetry(after_seq=0, limit=2)
    assert [r.seq for r in page.records] == [1, 2] and page.next_seq == 2
    agent.stop()
    agent.start()
    _wait_generate_ok(agent)
    with agent.client() as c:
        rest = c.telemetry(after_seq=page.next_seq)
    assert [r.seq for r in rest.records] == [3, 4]  # nothing lost, nothing repeated
    assert all(r.outcome == "ok" and r.completion_tokens > 0 for r in rest.records)


def test_local_inference_listener_serves_apps_but_not_management(
        tmp_path: Path, ladder: dict[str, Path]) -> None:
    import grpc

    from agent.rpc import agent_pb2 as pb
    from agent.rpc import agent_pb2_grpc as pb_grpc

    sock = tmp_path / "agent.sock"
    a = AgentProcess(tmp_path / "data", extra=("--inference-listen", f"unix://{sock}")).start()
    try:
        _load(a, ladder["q2_k"], "q2_k")  # management: the --listen address
        with grpc.insecure_channel(f"unix://{sock}") as channel:
            stub = pb_grpc.AgentServiceStub(channel)
            events = list(stub.Generate(pb.GenerateRequest(prompt="hi", max_tokens=3),
                                        timeout=60))
            assert events[-1].summary.completion_tokens > 0
            with pytest.raises(grpc.RpcError) as info:
                stub.LoadModel(a.load_request(ladder["q2_k"], "q2_k"), timeout=10)
            assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED
    finally:
        a.stop()
