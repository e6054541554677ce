"""Several models per device, against a real agent with real llama.cpp and onnxruntime: models
beside each other in their slots, aliases, least-recently-used unloading under memory pressure
(an emulated 2 GB device), loads on demand, pinned models, per-slot trials, replace, restore.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import onnxruntime as ort
import pytest
import tritonclient.grpc as triton

from agent.contract import sha256_file
from agent.rpc import agent_pb2 as pb
from agent.rpc import agent_pb2_grpc as pb_grpc
from controller.testmodels import write_tiny_lora
from tests.agent_process import AgentProcess
from tests.openai_agent import curl, free_port, sse_events

MIB = 1024 * 1024
EMULATED = "rpi4-2gb"  # 2048 MiB less a 384 MiB reserve: a 1664 MiB budget


class Agent:
    """A real agent and raw stubs on its management port (the fields the controller's client
    does not send yet: model, aliases, replace, pinned)."""

    def __init__(self, process: AgentProcess, models: Path) -> None:
        self.process = process
        self.models = models
        self.channel = grpc.insecure_channel(f"127.0.0.1:{process.port}")
        self.stub = pb_grpc.AgentServiceStub(self.channel)
        # the Open Inference Protocol, with the real tritonclient (it registers the OIP
        # messages itself: importing the agent's stubs here too would clash)
        self.oip = triton.InferenceServerClient(url=f"127.0.0.1:{process.port}")

    def path(self, variant: str) -> Path:
        if variant == "fp32":
            return self.models / "tiny-mlp" / "tiny-mlp-fp32.onnx"
        return self.models / "tiny-llama" / f"tiny-llama-{variant}.gguf"

    def load(self, name: str, variant: str, mib: int = 0, **kw: Any) -> pb.LoadModelResponse:
        path = self.path(variant)
        self.process.stage(path)
        fmt = "onnx" if path.suffix == ".onnx" else "gguf"
        request = pb.LoadModelRequest(
            sha256=sha256_file(path), name=name, variant=variant, format=fmt, n_ctx=256,
            size_bytes=path.stat().st_size, estimated_memory_bytes=mib * MIB, **kw)
        response: pb.LoadModelResponse = self.stub.LoadModel(request, timeout=300)
        return response

    def generate(self, model: str = "", prompt: str = "Once upon a time",
                 max_tokens: int = 12) -> tuple[str, pb.GenerateSummary]:
        text, summary = [], pb.GenerateSummary()
        for event in self.stub.Generate(pb.GenerateRequest(
                prompt=prompt, max_tokens=max_tokens, temperature=0.0, model=model),
                timeout=300):
            if event.HasField("summary"):
                summary = event.summary
            else:
                text.append(event.text)
        return "".join(text), summary

    def infer(self, name: str, x: np.ndarray) -> np.ndarray:
        tensor = triton.InferInput("input", list(x.shape), "FP32")
        tensor.set_data_from_numpy(x)
        got: np.ndarray = self.oip.infer(name, [tensor]).as_numpy("output")
        return got

    def slots(self) -> dict[str, pb.ModelSlot]:
        return {s.name: s for s in self.stub.GetStore(pb.GetStoreRequest(), timeout=30).slots}

    def resident(self) -> set[str]:
        return {name for name, s in self.slots().items() if s.resident}

    def worker_pid(self, name: str) -> int:
        models = self.stub.ListModels(pb.ListModelsRequest(), timeout=30).models
        return next(m.worker_pid for m in models if m.name == name and m.active)

    def log(self) -> str:
        return (self.process.data_dir.parent / f"{self.process.data_dir.name}.log").read_text()

    def close(self) -> None:
        self.oip.close()
        self.channel.close()


@pytest.fixture
def start(tmp_path: Path, model_cache: Path) -> Iterator[Any]:
    started: list[Agent] = []

    def make(emulate: str = "", extra: tuple[str, ...] = (),
             data: Path | None = None) -> Agent:
        process = AgentProcess(data or tmp_path / "data", emulate=emulate, extra=extra).start()
        agent = Agent(process, model_cache)
        started.append(agent)
        return agent

    yield make
    for agent in started:
        agent.close()
        agent.process.stop()


def _code(call: Any) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.RpcError) as info:
        call()
    return info.value.code(), info.value.details()


def test_an_llm_and_an_onnx_classifier_serve_side_by_side(start: Any, model_cache: Path
                                                          ) -> None:
    agent = start()
    agent.load("tiny-llama", "q4_k_m")
    loaded = agent.load("tiny-mlp", "fp32", aliases=["classifier"])
    assert loaded.swap_strategy == "hand-over" and not loaded.evicted
    assert agent.resident() == {"tiny-llama", "tiny-mlp"}
    text, summary = agent.generate()  # no model named: the text model, not the classifier
    assert text and summary.model == "tiny-llama" and summary.load_wait_ms == 0
    x = np.random.default_rng(0).standard_normal((2, 64)).astype(np.float32)
    local = ort.InferenceSession(str(agent.path("fp32")), providers=["CPUExecutionProvider"])
    np.testing.assert_allclose(agent.infer("tiny-mlp", x), local.run(None, {"input": x})[0],
                               rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(agent.infer("classifier", x), agent.infer("tiny-mlp", x))
    assert agent.oip.is_model_ready("classifier") and not agent.oip.is_model_ready("tiny-llama")
    assert agent.generate("tiny-llama")[0] == text  # both still answer, neither reloaded
    code, details = _code(lambda: agent.generate("tiny-mlp"))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "tensor inference" in details
    version = agent.stub.GetVersion(pb.GetVersionRequest(), timeout=10)
    assert "multi-model" in version.capabilities
    models = agent.stub.ListModels(pb.ListModelsRequest(), timeout=10).models
    assert {m.name for m in models if m.active and m.resident} == {"tiny-llama", "tiny-mlp"}
    assert all(m.memory_bytes > 0 for m in models if m.active)


def test_two_llms_and_an_alias_a_second_deploy_repoints(start: Any) -> None:
    agent = start()
    agent.load("tiny-llama", "q8_0", aliases=["assistant", "default"])
    agent.load("tiny-chat", "q4_k_m", aliases=["assistant"])
    slots = agent.slots()
    assert list(slots["tiny-llama"].aliases) == ["default"]
    assert list(slots["tiny-chat"].aliases) == ["assistant"]
    assert agent.generate("assistant")[1].model == "tiny-chat"
    q8 = sha256_file(agent.path("q8_0"))
    assert agent.generate("tiny-llama")[1].sha256 == q8
    assert agent.generate()[1].model == "tiny-llama"  # the alias "default"
    store = agent.stub.GetStore(pb.GetStoreRequest(), timeout=10)
    # what an older controller reads: the model of the most recent load
    assert store.active_sha256 == sha256_file(agent.path("q4_k_m"))
    code, details = _code(lambda: agent.generate("nope"))
    assert code == grpc.StatusCode.NOT_FOUND and "assistant" in details
    records = agent.stub.GetTelemetry(pb.GetTelemetryRequest(), timeout=10).records
    assert [r.model for r in records] == ["tiny-chat", "tiny-llama", "tiny-llama"]


def test_memory_pressure_unloads_the_least_recently_used_and_it_loads_on_demand(
        start: Any) -> None:
    port = free_port()
    agent = start(EMULATED, ("--openai-listen", f"127.0.0.1:{port}"))
    agent.load("tiny-llama", "q4_k_m", 700)
    agent.load("tiny-chat", "q8_0", 700)
    before, _ = agent.generate("tiny-llama")
    agent.generate("tiny-chat")  # now tiny-llama is the least recently used
    third = agent.load("tiny-third", "q2_k", 700)
    assert list(third.evicted) == ["tiny-llama"]
    slots = agent.slots()
    assert not slots["tiny-llama"].resident and slots["tiny-llama"].active_sha256
    # its next request loads it again (unloading tiny-chat, now the least recently used)
    after, summary = agent.generate("tiny-llama")
    assert after == before and summary.load_wait_ms > 0 and summary.model == "tiny-llama"
    assert agent.resident() == {"tiny-llama", "tiny-third"}
    record = agent.stub.GetTelemetry(pb.GetTelemetryRequest(), timeout=10).records[-1]
    assert record.model == "tiny-llama" and record.load_wait_ms > 0

    # the OpenAI endpoint: every name, a model loaded on demand says how long it waited
    status, body = curl(f"http://127.0.0.1:{port}/v1/models")
    assert status == 200
    assert {m["id"] for m in json.loads(body)["data"]} == {"tiny-llama", "tiny-chat",
                                                          "tiny-third"}
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/v1/completions", method="POST",
        data=json.dumps({"model": "tiny-chat", "prompt": "Once", "max_tokens": 4}).encode(),
        headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=120) as response:
        wait = float(response.headers["X-Edgefleet-Load-Wait-Ms"])
        served = response.headers["X-Edgefleet-Model"]
        timings = json.loads(response.read())["timings"]
    assert wait > 0 and timings["load_wait_ms"] == pytest.approx(wait, abs=0.1)
    assert served == "tiny-chat"
    status, body = curl("-H", "Content-Type: application/json", "-d", json.dumps(
        {"model": "nope", "prompt": "Once", "max_tokens": 4}),
        f"http://127.0.0.1:{port}/v1/completions")
    assert status == 404 and json.loads(body)["error"]["code"] == "model_not_found"

    # two requests at once for an unloaded model: one load, both answered
    assert "tiny-third" not in agent.resident()
    loads_before = agent.log().count("loaded tiny-third on demand")
    results: list[str] = []
    threads = [threading.Thread(target=lambda: results.append(agent.generate("tiny-third")[0]))
               for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert len(results) == 2 and results[0] == results[1]
    assert agent.log().count("loaded tiny-third on demand") == loads_before + 1

    # a streamed response names the model and its load wait in its head, as soon as it starts
    assert "tiny-llama" not in agent.resident()
    for loaded in (True, False):  # loaded on demand, then resident
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/v1/completions", method="POST",
            data=json.dumps({"model": "tiny-llama", "prompt": "Once", "max_tokens": 4,
                             "stream": True}).encode(),
            headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=120) as response:
            assert response.headers["Content-Type"].startswith("text/event-stream")
            assert response.headers["X-Edgefleet-Model"] == "tiny-llama"
            wait = float(response.headers["X-Edgefleet-Load-Wait-Ms"])
            events = sse_events(response.read().decode())
        assert events[-1] == "[DONE]"
        assert events[-2]["timings"]["load_wait_ms"] == pytest.approx(wait, abs=0.1)
        assert (wait > 0) is loaded


def test_a_pinned_model_is_never_unloaded_and_a_refusal_names_it(start: Any) -> None:
    agent = start(EMULATED)
    agent.load("tiny-llama", "q4_k_m", 900, pinned=True)
    agent.load("tiny-chat", "q8_0", 600)
    agent.generate("tiny-chat")
    third = agent.load("tiny-third", "q2_k", 700)  # the pinned one is older, yet it stays
    assert list(third.evicted) == ["tiny-chat"]
    # the preflight already says so, before a byte is sent, when it is told the slot
    big = agent.path("f16")

    def check_fit(**slot: Any) -> pb.CheckFitResponse:
        answer: pb.CheckFitResponse = agent.stub.CheckFit(pb.CheckFitRequest(
            sha256=sha256_file(big), size_bytes=big.stat().st_size,
            estimated_memory_bytes=1000 * MIB, **slot), timeout=60)
        return answer

    refused = check_fit(name="tiny-big")
    assert not refused.fits
    assert "memory: needs ~1,000 MiB beside what stays loaded" in refused.reason
    assert "held by tiny-llama (~900 MiB, pinned)" in refused.reason
    assert check_fit(name="tiny-big", replace=True).fits  # the others would make way
    assert check_fit().fits  # an older controller: the budget alone (1664 MiB)
    code, details = _code(lambda: agent.load("tiny-big", "f16", 1000))
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "tiny-llama (~900 MiB, pinned)" in details
    assert agent.resident() == {"tiny-llama", "tiny-third"}  # nothing unloaded for it
    assert "tiny-big" not in agent.slots()
    assert agent.generate("tiny-chat")[1].load_wait_ms > 0  # unloads tiny-third, not pinned
    assert agent.resident() == {"tiny-llama", "tiny-chat"}


@pytest.mark.parametrize("pinned", [False, True])
def test_an_adapter_makes_room_as_a_model_does(start: Any, tmp_path: Path,
                                              pinned: bool) -> None:
    """A LoRA adapter that does not fit beside its base unloads the least-recently-used model
    of another slot; when that one is pinned, nothing is unloaded and the refusal names it."""
    agent = start(EMULATED)
    agent.load("tiny-chat", "q2_k", 700, pinned=pinned)
    agent.load("tiny-llama", "q8_0", 960)  # 1660 of the 1664 MiB; the adapter needs ~10 more
    lora = tmp_path / "kiosk.gguf"
    write_tiny_lora(lora)
    request = pb.LoadModelRequest(sha256=agent.process.stage(lora), name="kiosk", format="lora",
                                  size_bytes=lora.stat().st_size,
                                  base_sha256=sha256_file(agent.path("q8_0")))
    if pinned:
        code, details = _code(lambda: agent.stub.LoadModel(request, timeout=300))
        assert code == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "adapter needs ~10 MiB beside tiny-llama" in details
        assert "held by tiny-chat (~700 MiB, pinned)" in details
        assert agent.resident() == {"tiny-chat", "tiny-llama"}
        return
    loaded: pb.LoadModelResponse = agent.stub.LoadModel(request, timeout=300)
    assert loaded.swap_strategy == "adapter" and list(loaded.evicted) == ["tiny-chat"]
    assert agent.resident() == {"tiny-llama"}  # the base stayed loaded
    assert "unloaded least-recently-used to make room for an adapter on tiny-llama" in \
        agent.log()
    assert agent.generate("tiny-chat")[1].load_wait_ms > 0  # still desired: loads on demand


def test_a_trial_given_up_in_one_slot_leaves_the_other_serving(start: Any) -> None:
    agent = start()
    agent.load("tiny-mlp", "fp32")
    agent.load("tiny-llama", "q2_k")
    mlp_pid = agent.worker_pid("tiny-mlp")
    x = np.ones((1, 64), dtype=np.float32)
    expected = agent.infer("tiny-mlp", x)
    q2, q4 = sha256_file(agent.path("q2_k")), sha256_file(agent.path("q4_k_m"))

    agent.load("tiny-llama", "q4_k_m", trial=True)  # aborted by the controller
    agent.stub.AbortTrial(pb.AbortTrialRequest(sha256=q4, reason="canary failed"), timeout=60)
    assert agent.generate("tiny-llama")[1].sha256 == q2

    agent.load("tiny-llama", "q4_k_m", trial=True, trial_seconds=2)  # its deadline passes
    deadline = time.monotonic() + 30
    while agent.slots()["tiny-llama"].active_sha256 != q2 and time.monotonic() < deadline:
        time.sleep(0.2)
    slot = agent.slots()["tiny-llama"]
    assert slot.active_sha256 == q2 and slot.reverted_cause == pb.REVERT_CAUSE_DEADLINE

    agent.load("tiny-llama", "q4_k_m", trial=True)  # its worker crashes
    os.kill(agent.worker_pid("tiny-llama"), signal.SIGKILL)
    deadline = time.monotonic() + 30
    while agent.slots()["tiny-llama"].active_sha256 != q2 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert agent.slots()["tiny-llama"].reverted_cause == pb.REVERT_CAUSE_CRASH
    assert agent.generate("tiny-llama")[1].sha256 == q2
    # the classifier served throughout, in the same worker
    assert agent.worker_pid("tiny-mlp") == mlp_pid
    np.testing.assert_array_equal(agent.infer("tiny-mlp", x), expected)
    assert agent.slots()["tiny-mlp"].reverted_sha256 == ""


def test_replace_stops_the_others_and_a_given_up_trial_brings_them_back(start: Any) -> None:
    agent = start()
    agent.load("tiny-llama", "q2_k")
    agent.load("tiny-mlp", "fp32")
    q4 = sha256_file(agent.path("q4_k_m"))
    agent.load("tiny-chat", "q4_k_m", replace=True, trial=True)
    assert set(agent.slots()) == {"tiny-chat"} and agent.resident() == {"tiny-chat"}
    code, _ = _code(lambda: agent.generate("tiny-llama"))
    assert code == grpc.StatusCode.NOT_FOUND
    agent.stub.AbortTrial(pb.AbortTrialRequest(sha256=q4, reason="health gate"), timeout=60)
    assert {"tiny-llama", "tiny-mlp"} <= set(agent.slots())
    assert agent.resident() == {"tiny-llama", "tiny-mlp"}
    assert agent.generate("tiny-llama")[0]
    # a replace that is not on trial drops the others at once
    agent.load("tiny-chat", "q4_k_m", replace=True)
    assert set(agent.slots()) == {"tiny-chat"} and agent.resident() == {"tiny-chat"}
    assert agent.generate()[1].model == "tiny-chat"


def test_a_restart_restores_pinned_then_recently_used_models_as_memory_allows(
        start: Any, tmp_path: Path) -> None:
    agent = start(EMULATED)
    agent.load("tiny-llama", "q4_k_m", 900, pinned=True)
    agent.load("tiny-chat", "q8_0", 600)
    agent.load("tiny-third", "q2_k", 700)  # unloads tiny-chat
    agent.generate("tiny-third")
    agent.load("tiny-mlp", "fp32", trial=True)  # on trial at the restart: given up
    agent.process.stop()  # graceful: saves when each model was last used
    agent.process.start()
    again = Agent(agent.process, agent.models)
    try:
        slots = again.slots()
        assert {n for n, s in slots.items() if s.resident} == {"tiny-llama", "tiny-third"}
        assert slots["tiny-chat"].active_sha256 and not slots["tiny-chat"].resident
        assert slots["tiny-mlp"].active_sha256 == ""
        assert "restarted" in slots["tiny-mlp"].reverted_reason
        assert slots["tiny-llama"].pinned
        assert again.generate("tiny-chat")[1].load_wait_ms > 0
        assert again.resident() == {"tiny-llama", "tiny-chat"}
    finally:
        again.close()


def test_an_upgraded_agent_reads_the_single_model_state_it_left(start: Any, tmp_path: Path,
                                                               model_cache: Path) -> None:
    data = tmp_path / "old"
    q4 = model_cache / "tiny-llama" / "tiny-llama-q4_k_m.gguf"
    sha = sha256_file(q4)
    (data / "store" / "blobs").mkdir(parents=True)
    (data / "store" / "blobs" / sha).write_bytes(q4.read_bytes())
    record = {"sha256": sha, "name": "tiny-llama", "variant": "q4_k_m", "format": "gguf",
              "n_ctx": 256, "size_bytes": q4.stat().st_size}
    (data / "store" / "state.json").write_text(json.dumps({  # as an agent before slots wrote
        "active": record, "previous": None, "trial": False, "trial_until": 0.0,
        "reverted": "", "reverted_reason": "", "reverted_cause": 0, "staged": "",
        "manifest_seq": 4, "adapters": [], "adapter_default": "", "adapter_trial": None}))
    agent = start(data=data)
    assert agent.generate()[1].sha256 == sha
    store = agent.stub.GetStore(pb.GetStoreRequest(), timeout=10)
    assert store.active_sha256 == sha and store.manifest_seq == 4
    assert [(s.name, s.active_sha256, s.resident) for s in store.slots] == [
        ("tiny-llama", sha, True)]
    agent.load("tiny-llama", "q2_k")  # a new variant: the old one is its previous
    assert agent.slots()["tiny-llama"].previous_sha256 == sha
