"""A device is predicted on the GPU backend its agent's llama.cpp really offloads to.

A Jetson profile declares CUDA offload; an agent whose llama.cpp has no GPU backend runs on
the CPU (every agent before offload support did), so its plan must say the CPU's speed and
why, not the GPU's.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from controller.adapters.data_files import load_profiles
from controller.cli.profile import describe
from controller.core import cost
from controller.core.models import Architecture, ModelSpec, Variant
from controller.core.profiles import llama_offload, offload_as_reported, overlay_probe
from controller.core.select import Request, choose
from tests.conftest import Cli

ARCH = Architecture(n_layer=32, n_embd=3072, n_head=32, n_head_kv=32, n_ctx_train=4096,
                    n_vocab=32064, params=3_820_000_000, n_ff=8192)
Q4 = Variant(name="q4_k_m", format="gguf", quant="Q4_K_M", size_bytes=2_390_000_000,
             bits_per_weight=4.9, quality_kld=0.03, quality_source="x", source="x")


def test_the_runtime_label_says_what_llama_cpp_offloads_to() -> None:
    assert llama_offload(("llama.cpp 0.3.36 offload=cuda", "onnxruntime 1.20")) == ("cuda",)
    assert llama_offload(("llama.cpp 0.3.36 offload=cuda,vulkan",)) == ("cuda", "vulkan")
    assert llama_offload(("llama.cpp 0.3.36", "onnxruntime 1.20")) == ()
    assert llama_offload(("onnxruntime 1.20",)) is None
    assert llama_offload(()) is None


def test_a_declared_gpu_follows_the_agent_s_build() -> None:
    orin = load_profiles()["jetson-orin-nano-8gb"]
    assert orin.accelerated and orin.gpu_backend == "cuda"
    assert offload_as_reported(orin, ("cuda",)) == orin
    assert offload_as_reported(orin, None) == orin  # nothing reported: the declaration
    vulkan = offload_as_reported(orin, ("vulkan",))
    assert vulkan.accelerated and vulkan.gpu_backend == "vulkan" and "vulkan" in vulkan.gpu_note
    cpu = offload_as_reported(orin, ())
    assert not cpu.accelerated and cpu.gpu_backend == ""
    assert "predicted on the CPU" in dict(describe(cpu))["gpu"]


def test_a_cpu_only_agent_on_a_jetson_is_planned_at_the_cpu_s_speed() -> None:
    orin = load_profiles()["jetson-orin-nano-8gb"]
    probed = {"arch": "aarch64", "cores": orin.cores, "isa": orin.isa,
              "ram_bytes": orin.ram_bytes, "disk_free_bytes": 50 * 10**9,
              "bandwidth_gbps": 0.0, "title": "Jetson", "runtimes": ("llama.cpp",)}
    gpu = overlay_probe(orin, "j1", **probed, llama_offload=("cuda",))
    cpu = overlay_probe(orin, "j1", **probed, llama_offload=())
    model = ModelSpec(name="m", title="m", arch=ARCH, variants=(Q4,), default_ctx=4096)
    on_gpu = choose(model, gpu, Request(ctx=4096)).chosen
    on_cpu = choose(model, cpu, Request(ctx=4096)).chosen
    assert on_gpu is not None and on_cpu is not None
    assert on_cpu.tokens_per_s == pytest.approx(
        cost.decode_tokens_per_s(ARCH, Q4, orin, 2048, backend="cpu"), rel=1e-9)
    assert on_gpu.tokens_per_s == pytest.approx(
        cost.decode_tokens_per_s(ARCH, Q4, orin, 2048), rel=1e-9)
    assert on_cpu.tokens_per_s < on_gpu.tokens_per_s / 2


def test_device_show_says_a_declared_gpu_is_not_used(cli: Cli) -> None:
    import json

    from controller.services.context import Fleet

    assert cli("device", "add", "j1", "--host", "192.0.2.9",
               "--profile", "jetson-orin-nano-8gb").code == 0
    assert cli("device", "add", "j2", "--host", "192.0.2.10",
               "--profile", "jetson-orin-nano-8gb").code == 0
    fleet = Fleet.open()
    for name, label in (("j1", "llama.cpp 0.3.36"), ("j2", "llama.cpp 0.3.36 offload=cuda")):
        fleet.inventory.update_device(name, probed_json=json.dumps(
            {"arch": "aarch64", "cores": 6, "runtimes": [label, "onnxruntime 1.20.1"]}))
    shown = cli("device", "show", "j1")
    assert shown.code == 0, shown.err
    assert "runtimes: llama.cpp 0.3.36, onnxruntime 1.20.1" in shown.out
    assert "the agent's llama.cpp has no GPU backend: predicted on the CPU" in shown.out
    shown = cli("device", "show", "j2")
    assert "offload=cuda" in shown.out and "predicted on the CPU" not in shown.out


def test_the_probe_s_runtime_label_reaches_the_plan_and_a_cpu_calibration_stays_on_the_cpu(
        home: Path) -> None:
    from agent.rpc import agent_pb2 as pb
    from controller.adapters.tables import Device
    from controller.services.context import Fleet, profile_from_probe

    fleet = Fleet.open()
    orin = load_profiles()["jetson-orin-nano-8gb"]

    def probe(*runtimes: str) -> pb.HardwareProfile:
        return pb.HardwareProfile(arch="aarch64", cores=6, cpu_flags=list(orin.isa),
                                  ram_total_bytes=orin.ram_bytes, runtimes=list(runtimes))

    calibrated_on_cpu = Device(name="j1", host="192.0.2.9", profile=orin.name,
                               decode_efficiency=0.4, decode_efficiency_backend="cpu")
    cpu = profile_from_probe(fleet, calibrated_on_cpu, probe("llama.cpp 0.3.36"))
    assert not cpu.accelerated and cpu.decode_efficiency == 0.4  # measured on the CPU: used
    gpu = profile_from_probe(fleet, calibrated_on_cpu, probe("llama.cpp 0.3.36 offload=cuda"))
    assert gpu.accelerated and gpu.gpu_backend == "cuda"
    assert gpu.decode_efficiency == 0.0  # a CPU share says nothing of the GPU path
    legacy = Device(name="j2", host="192.0.2.10", profile=orin.name, decode_efficiency=0.4)
    assert profile_from_probe(fleet, legacy, probe("llama.cpp 0.3.36")).decode_efficiency == 0.4
