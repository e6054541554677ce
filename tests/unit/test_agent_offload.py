"""The agent offloads to a GPU when its llama.cpp build can, and says so in its probe.

A build's GPU backends are the ``libggml-<backend>`` libraries beside ``libggml-cpu``; the
probe reads the directory (llama.cpp stays out of the agent process) and the runtime asks
llama.cpp itself. ``FLEET_AGENT_GPU_LAYERS`` overrides both the same way.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from agent import offload
from agent.probe import installed_runtimes


def _libs(tmp_path: Path, *names: str) -> Path:
    for name in names:
        (tmp_path / name).write_bytes(b"")
    return tmp_path


def test_backends_come_from_the_build_s_libraries(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(offload.ENV, raising=False)
    cpu_only = tmp_path / "a"
    cpu_only.mkdir()
    _libs(cpu_only, "libggml-base.so", "libggml-cpu.so", "libllama.so.0.5.0")
    assert offload.gpu_backends(cpu_only) == ()
    both = tmp_path / "b"
    both.mkdir()
    _libs(both, "libggml-cpu.so", "libggml-cuda.so", "libggml-cuda.so.0.25.3",
          "libggml-vulkan.so", "libggml-metal.dylib")
    assert offload.gpu_backends(both) == ("cuda", "metal", "vulkan")
    assert offload.gpu_backends(tmp_path / "missing") == ()


def test_the_setting_overrides_the_build(tmp_path: Path,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    cuda = _libs(tmp_path, "libggml-cuda.so")
    monkeypatch.delenv(offload.ENV, raising=False)
    assert offload.gpu_layers(True) == -1 and offload.gpu_layers(False) == 0
    monkeypatch.setenv(offload.ENV, "0")
    assert offload.gpu_layers(True) == 0 and offload.gpu_backends(cuda) == ()
    monkeypatch.setenv(offload.ENV, "12")
    assert offload.gpu_layers(False) == 12 and offload.gpu_backends(cuda) == ("cuda",)
    monkeypatch.setenv(offload.ENV, "all")  # not a number: the build decides
    assert offload.gpu_layers(True) == -1


def test_this_host_s_build_is_cpu_only_and_the_probe_says_so(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # the CI build (GGML_NATIVE=OFF, no GPU backend): no offload word in the label
    import llama_cpp

    monkeypatch.delenv(offload.ENV, raising=False)
    assert not llama_cpp.llama_supports_gpu_offload()
    assert offload.gpu_backends() == ()
    label = next(r for r in installed_runtimes() if r.startswith("llama.cpp "))
    assert offload.LABEL_PREFIX not in label


def test_the_probe_labels_a_gpu_build(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(offload, "gpu_backends", lambda lib_dir=None: ("cuda",))
    label = next(r for r in installed_runtimes() if r.startswith("llama.cpp "))
    assert label.endswith(" offload=cuda")
