"""LoRA adapters through a real agent process over gRPC: a verified adapter blob loads on the
loaded base without reloading it, serves by default or per request, stays on trial until
committed (a restart gives it up, a committed one comes back after a restart), and an adapter
for another architecture or another base is refused with ADAPTER_MISMATCH."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from agent.contract import ErrorKind, sha256_file
from agent.rpc import agent_pb2 as pb
from controller.errors import AgentRefused
from controller.testmodels import TinyLoraSpec, write_tiny_lora
from tests.agent_process import AgentProcess

PROMPT = "the edge fleet model on the device"


def _adapter_request(a: AgentProcess, path: Path, name: str, base: str,
                     trial: bool = False) -> pb.LoadModelRequest:
    return pb.LoadModelRequest(sha256=a.stage(path), name=name, format="lora",
                               size_bytes=path.stat().st_size, base_sha256=base, trial=trial)


def _text(a: AgentProcess, adapter: str | None = None) -> str:
    with a.client() as c:
        return c.generate(PROMPT, 24, adapter=adapter).text


def _adapters(a: AgentProcess) -> list[tuple[str, bool, bool]]:
    with a.client() as c:
        return [(m.name, m.active, m.on_trial) for m in c.list_models() if m.format == "lora"]


def _with_base(a: AgentProcess, model: Path) -> str:
    """Start the agent with ``model`` loaded; its sha256."""
    a.start()
    base = a.stage(model)
    with a.client() as c:
        c.load_model(a.load_request(model, "q8_0"))
    return base


def _restart(a: AgentProcess) -> None:
    assert a.proc is not None
    os.killpg(a.proc.pid, signal.SIGKILL)  # agent and worker gone at once
    a.wait_exit()
    a.start()


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    out = {"kiosk": tmp_path / "kiosk.gguf", "faq": tmp_path / "faq.gguf",
           "qwen": tmp_path / "qwen.gguf"}
    write_tiny_lora(out["kiosk"])
    write_tiny_lora(out["faq"], spec=TinyLoraSpec(seed=77))
    write_tiny_lora(out["qwen"], spec=TinyLoraSpec(architecture="qwen2"))
    return out


def test_adapter_trial_commit_restart_and_per_request(
        agent: AgentProcess, ladder: dict[str, Path], files: dict[str, Path]) -> None:
    base = _with_base(agent, ladder["q8_0"])
    with agent.client() as c:
        worker_pid = next(m.worker_pid for m in c.list_models() if m.format == "gguf")
    plain = _text(agent)

    with agent.client() as c:
        reply = c.load_model(_adapter_request(agent, files["kiosk"], "kiosk", base, trial=True))
    assert reply.swap_strategy == "adapter" and reply.model.on_trial
    kiosk = _text(agent)
    assert kiosk != plain  # the adapter on trial serves by default
    assert _text(agent, "") == plain and _text(agent, "kiosk") == kiosk
    assert _adapters(agent) == [("kiosk", True, True)]
    with agent.client() as c:  # the base was not reloaded: same worker process
        assert next(m.worker_pid for m in c.list_models() if m.format == "gguf") == worker_pid

    _restart(agent)  # uncommitted: given up, the base alone serves
    assert _text(agent) == plain and _adapters(agent) == []

    with agent.client() as c:
        c.load_model(_adapter_request(agent, files["kiosk"], "kiosk", base, trial=True))
        c.commit_model(sha256_file(files["kiosk"]))
        c.load_model(_adapter_request(agent, files["faq"], "faq", base))  # committed at once
    faq = _text(agent)
    assert faq not in (plain, kiosk) and _text(agent, "kiosk") == kiosk
    assert _adapters(agent) == [("kiosk", False, False), ("faq", True, False)]

    _restart(agent)  # committed adapters come back with their base, the default too
    assert _text(agent) == faq and _text(agent, "kiosk") == kiosk and _text(agent, "") == plain

    with agent.client() as c:  # a trial aborted: the previous default serves again
        c.load_model(_adapter_request(agent, files["kiosk"], "kiosk", base, trial=True))
        assert _text(agent) == kiosk
        c.abort_trial(sha256_file(files["kiosk"]), "canary failed")
    assert _text(agent) == faq


def test_a_mismatching_adapter_is_refused_and_the_base_keeps_serving(
        agent: AgentProcess, ladder: dict[str, Path], files: dict[str, Path]) -> None:
    base = _with_base(agent, ladder["q8_0"])
    plain = _text(agent)
    with agent.client() as c, pytest.raises(AgentRefused) as refused:
        c.load_model(_adapter_request(agent, files["qwen"], "qwen", base))
    assert refused.value.kind is ErrorKind.ADAPTER_MISMATCH
    assert "qwen2 base" in str(refused.value)
    other = sha256_file(ladder["q2_k"])
    with agent.client() as c, pytest.raises(AgentRefused) as refused:
        c.load_model(_adapter_request(agent, files["kiosk"], "kiosk", other))
    assert refused.value.kind is ErrorKind.ADAPTER_MISMATCH
    assert "deploy its base first" in str(refused.value)
    with agent.client() as c, pytest.raises(AgentRefused) as refused:
        c.generate(PROMPT, 4, adapter="nope")
    assert refused.value.kind is ErrorKind.NOT_FOUND
    assert _text(agent) == plain and _adapters(agent) == []


def test_an_adapter_trial_ends_at_its_deadline(
        agent: AgentProcess, ladder: dict[str, Path], files: dict[str, Path]) -> None:
    """LoadModel.trial_seconds holds for an adapter as for a model: uncommitted by then, the
    agent gives it up by itself and the previous default serves again."""
    base = _with_base(agent, ladder["q8_0"])
    with agent.client() as c:
        c.load_model(_adapter_request(agent, files["faq"], "faq", base))  # the default
    faq = _text(agent)
    request = _adapter_request(agent, files["kiosk"], "kiosk", base, trial=True)
    request.trial_seconds = 5
    with agent.client() as c:
        c.load_model(request)
    assert _adapters(agent) == [("faq", False, False), ("kiosk", True, True)]
    with agent.client() as c:
        store = c.get_store()
    slot = next(s for s in store.slots if s.active_sha256 == base)
    assert not slot.on_trial  # the base model is committed: only its adapter is on trial
    assert 0 < slot.trial_seconds_left <= 5 and 0 < store.trial_seconds_left <= 5
    kiosk = _text(agent)
    assert kiosk != faq
    deadline = time.monotonic() + 30  # the watch runs every second; bounded wait
    while _adapters(agent) != [("faq", True, False)] and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _adapters(agent) == [("faq", True, False)]
    assert _text(agent) == faq
    with agent.client() as c, pytest.raises(AgentRefused) as refused:
        c.commit_model(sha256_file(files["kiosk"]))  # too late: nothing on trial to commit
    assert refused.value.kind is not ErrorKind.UNSPECIFIED
