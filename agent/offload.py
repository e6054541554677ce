"""Whether llama.cpp offloads to a GPU on this device, and to which backends.

llama-cpp-python built with a GPU backend ships that backend as a library of its own beside
``libggml-cpu`` (``libggml-cuda.so``, ``libggml-metal.dylib``, ``libggml-vulkan.so``,
``libggml-opencl.so``), so the probe can tell without loading llama.cpp into the agent
process. A runtime offloads every layer when its build can (``n_gpu_layers=-1``), so what the
controller predicts (its GPU backend's speed, or the CPU's) is what the agent runs.

``FLEET_AGENT_GPU_LAYERS`` overrides: ``0`` keeps models on the CPU (and the probe then
reports no offload, so predictions follow), a positive number offloads that many layers
(predictions still assume all of them), a negative one all. Backends other than these four
(HIP, SYCL) are not offloaded to unless the setting asks, and then are not predicted.
"""

from __future__ import annotations

import importlib.util
import logging
import os
from pathlib import Path

log = logging.getLogger(__name__)

ENV = "FLEET_AGENT_GPU_LAYERS"
# how the probe's runtime label says it: "llama.cpp 0.3.36 offload=cuda" (controller.core.
# profiles.llama_offload reads it)
LABEL_PREFIX = "offload="
# library stem -> the backend name the controller's profiles use
BACKEND_LIBRARIES = {"ggml-cuda": "cuda", "ggml-metal": "metal", "ggml-vulkan": "vulkan",
                     "ggml-opencl": "opencl"}


def _setting() -> int | None:
    raw = os.environ.get(ENV, "").strip()
    try:
        return int(raw) if raw else None
    except ValueError:
        log.warning("%s=%r is not a number of layers; ignored (the build decides)", ENV, raw)
        return None


def llama_lib_dir() -> Path | None:
    spec = importlib.util.find_spec("llama_cpp")
    if spec is None or spec.origin is None:
        return None
    return Path(spec.origin).parent / "lib"


def gpu_backends(lib_dir: Path | None = None) -> tuple[str, ...]:
    """The GPU backends this llama.cpp build offloads to ((): CPU only or offload off)."""
    if _setting() == 0:
        return ()
    lib_dir = lib_dir if lib_dir is not None else llama_lib_dir()
    if lib_dir is None or not lib_dir.is_dir():
        return ()
    found = set()
    for path in lib_dir.iterdir():
        stem = path.name.removeprefix("lib").split(".", 1)[0]
        if stem in BACKEND_LIBRARIES:
            found.add(BACKEND_LIBRARIES[stem])
    return tuple(sorted(found))


def gpu_layers(lib_dir: Path | None = None) -> int:
    """``n_gpu_layers`` for a model: the setting (any negative number: all layers), else all
    layers when the build has a GPU backend the probe reports (the same test, so the
    controller's prediction and the runtime agree), else none."""
    setting = _setting()
    if setting is not None:
        return max(setting, -1)
    return -1 if gpu_backends(lib_dir) else 0
