"""The agent offloads to a GPU when its llama.cpp build has a GPU backend, and says so in its
probe, by the same test (so the controller predicts what the runtime does).

A build's GPU backends are the ``libggml-<backend>`` libraries beside ``libggml-cpu``; the
probe reads the directory (llama.cpp stays out of the agent process). ``FLEET_AGENT_GPU_LAYERS``
overrides both the same way.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from agent import offload
from agent.probe import installed_runtimes
from controller.core.profiles import GPU_BACKENDS, OFFLOAD_LABEL


def _libs(where: Path, *names: str) -> Path:
    where.mkdir(parents=True, exist_ok=True)
    for name in names:
        (where / name).write_bytes(b"")
    return where


def test_backends_come_from_the_build_s_libraries(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(offload.ENV, raising=False)
    cpu_only = _libs(tmp_path / "a", "libggml-base.so", "libggml-cpu.so", "libllama.so.0.5.0")
    assert offload.gpu_backends(cpu_only) == () and offload.gpu_layers(cpu_only) == 0
    both = _libs(tmp_path / "b", "libggml-cpu.so", "libggml-cuda.so", "libggml-cuda.so.0.25.3",
                 "libggml-vulkan.so", "libggml-metal.dylib", "ggml-opencl.dll",
                 "libggml-hip.so")
    assert offload.gpu_backends(both) == ("cuda", "metal", "opencl", "vulkan")
    assert offload.gpu_layers(both) == -1
    assert offload.gpu_backends(tmp_path / "missing") == ()
    # a backend the controller cannot predict (HIP) is not offloaded to by default
    assert offload.gpu_layers(_libs(tmp_path / "c", "libggml-hip.so")) == 0


def test_the_setting_overrides_the_build(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                         caplog: pytest.LogCaptureFixture) -> None:
    cuda = _libs(tmp_path / "cuda", "libggml-cuda.so")
    monkeypatch.setenv(offload.ENV, "0")
    assert offload.gpu_layers(cuda) == 0 and offload.gpu_backends(cuda) == ()
    monkeypatch.setenv(offload.ENV, "12")
    assert offload.gpu_layers(cuda) == 12 and offload.gpu_backends(cuda) == ("cuda",)
    monkeypatch.setenv(offload.ENV, "-5")
    assert offload.gpu_layers(cuda) == -1
    monkeypatch.setenv(offload.ENV, "O")  # a letter: warned about, the build decides
    with caplog.at_level(logging.WARNING, logger="agent.offload"):
        assert offload.gpu_layers(cuda) == -1
    assert "FLEET_AGENT_GPU_LAYERS='O' is not a number" in caplog.text


def test_the_runtime_passes_the_layers_to_llama_cpp(model_cache: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    from agent.runtimes.llama import LlamaRuntime

    gguf = model_cache / "tiny-llama" / "tiny-llama-q4_k_m.gguf"
    monkeypatch.setenv(offload.ENV, "7")
    assert LlamaRuntime(gguf, n_ctx=128, n_threads=1)._llm.model_params.n_gpu_layers == 7
    monkeypatch.delenv(offload.ENV)
    expected = -1 if offload.gpu_backends() else 0
    assert LlamaRuntime(gguf, n_ctx=128, n_threads=1)._llm.model_params.n_gpu_layers == expected


def test_the_probe_labels_the_build(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(offload.ENV, raising=False)
    label = next(r for r in installed_runtimes() if r.startswith("llama.cpp "))
    if offload.gpu_backends():
        assert label.endswith(offload.LABEL_PREFIX + ",".join(offload.gpu_backends()))
    else:  # a CPU-only build (this project's CI build): no offload word
        assert offload.LABEL_PREFIX not in label
    monkeypatch.setattr(offload, "gpu_backends", lambda lib_dir=None: ("cuda",))
    label = next(r for r in installed_runtimes() if r.startswith("llama.cpp "))
    assert label.endswith(" offload=cuda")


def test_the_wire_format_is_the_controller_s() -> None:
    assert offload.LABEL_PREFIX == OFFLOAD_LABEL
    assert set(offload.BACKEND_LIBRARIES.values()) == set(GPU_BACKENDS)
