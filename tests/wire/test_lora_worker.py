"""LoRA adapters on a loaded base, in a real worker process with real llama.cpp: the tiny
adapter (real, non-zero A and B matrices) changes greedy output, removing it restores the
base output exactly, and an adapter for another architecture is refused by kind."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.errors import AdapterMismatch, NotFound
from agent.runtimes.base import GenerationRequest
from agent.workers import Worker
from controller.testmodels import TinyLoraSpec, write_tiny_lora

PROMPT = "the edge fleet model on the device"


@pytest.fixture(scope="module")
def adapters(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("lora")
    out = {"kiosk": d / "kiosk.gguf", "robot": d / "robot.gguf", "qwen": d / "qwen.gguf"}
    write_tiny_lora(out["kiosk"])
    write_tiny_lora(out["robot"], spec=TinyLoraSpec(seed=99))
    write_tiny_lora(out["qwen"], spec=TinyLoraSpec(architecture="qwen2"))
    return out


@pytest.fixture(scope="module")
def worker(model_cache: Path) -> Iterator[Worker]:
    w = Worker("gguf", model_cache / "tiny-llama" / "tiny-llama-q8_0.gguf", 256, 2)
    yield w
    w.stop()


def run(worker: Worker, adapter: str | None) -> str:
    request = GenerationRequest(prompt=PROMPT, max_tokens=24, temperature=0.0, seed=7,
                                adapter=adapter)
    return "".join(v for k, v in worker.generate(request) if k == "text")


def test_adapter_changes_output_and_clearing_restores_the_base(
        worker: Worker, adapters: dict[str, Path]) -> None:
    base = run(worker, "")
    assert base and run(worker, "") == base  # greedy and seeded: repeatable
    info = worker.call("load_adapter", "kiosk", str(adapters["kiosk"]))
    assert info["alpha"] == 16.0 and not info["already"]
    worker.call("load_adapter", "robot", str(adapters["robot"]))
    kiosk = run(worker, "kiosk")
    robot = run(worker, "robot")
    assert kiosk != base and robot != base and kiosk != robot
    # per request, in any order, each answer is its adapter's (no cached prompt state leaks)
    assert run(worker, "") == base
    assert run(worker, "kiosk") == kiosk
    assert run(worker, "robot") == robot
    assert run(worker, "kiosk") == kiosk
    assert worker.call("adapters") == {"loaded": ["kiosk", "robot"], "active": "kiosk"}
    # None leaves the applied adapter as it is
    assert run(worker, None) == kiosk
    worker.call("drop_adapter", "kiosk")  # applied: taken off first
    assert worker.call("adapters") == {"loaded": ["robot"], "active": ""}
    assert run(worker, None) == base
    worker.call("drop_adapter", "robot")
    assert run(worker, "") == base


def test_refusals_keep_the_worker_serving(worker: Worker, adapters: dict[str, Path],
                                          model_cache: Path) -> None:
    base = run(worker, "")
    with pytest.raises(AdapterMismatch, match="qwen2 base"):
        worker.call("load_adapter", "qwen", str(adapters["qwen"]))
    with pytest.raises(AdapterMismatch, match="not a LoRA adapter"):
        worker.call("load_adapter", "model",
                    str(model_cache / "tiny-llama" / "tiny-llama-q2_k.gguf"))
    with pytest.raises(NotFound, match="not loaded"):
        run(worker, "nope")
    assert worker.alive and run(worker, "") == base
