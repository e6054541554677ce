"""Parse a hardware profile (TOML already read into a dict) into a ``Profile``, and lay a
device's probed numbers over it."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from controller.core.models import MIB, Profile
from controller.core.speed import backend_of
from controller.core.validation import Fields
from controller.errors import InvalidData

KINDS = ("device", "lab-scale-model")
GPU_BACKENDS = ("cuda", "metal", "vulkan", "opencl")
COOLING = ("active", "passive")
# A probe that only echoes the profile's own figure (an emulated lab device) measured nothing.
ECHOED_BANDWIDTH = "profile"


def _choice(f: Fields, key: str, allowed: tuple[str, ...]) -> str:
    value = f.text(key, "")
    if value and value not in allowed:
        raise InvalidData(f"{f.origin}: field '{f.prefix}{key}' must be one of "
                          f"{', '.join(allowed)}, got {value!r}")
    return value


def parse_profile(data: dict[str, Any], origin: str) -> Profile:
    f = Fields(data, origin)
    kind = f.text("kind", "device")
    if kind not in KINDS:
        raise InvalidData(f"{origin}: field 'kind' must be one of {', '.join(KINDS)}, got {kind!r}")
    cpu = f.section("cpu")
    mem = f.section("memory")
    power = f.section("power", required=False)
    storage = f.section("storage", required=False)
    gpu = f.section("gpu", required=False)
    compute = f.section("compute", required=False)
    thermal = f.section("thermal", required=False)
    ram_mib = mem.whole("ram_mib", minimum=1)
    reserve_mib = mem.whole("reserve_mib", minimum=0)
    if reserve_mib >= ram_mib:
        raise InvalidData(f"{origin}: field 'memory.reserve_mib' must be below memory.ram_mib")
    sources = f.texts("sources")
    if kind == "device" and not sources:
        raise InvalidData(f"{origin}: field 'sources' must cite where the numbers come from")
    cores = cpu.whole("cores", minimum=1)
    threads = cpu.whole("threads", 0)
    if threads > cores:
        raise InvalidData(f"{origin}: field 'cpu.threads' must not exceed cpu.cores ({cores})")
    offload = gpu.flag("offload", False)
    backend = _choice(gpu, "backend", GPU_BACKENDS)
    if offload and not backend:
        backend = "cuda" if "cuda" in gpu.text("name", "").lower() else ""
    return Profile(
        name=f.text("name"),
        title=f.text("title"),
        kind=kind,
        arch=cpu.text("arch"),
        cores=cores,
        isa=cpu.texts("isa"),
        ram_bytes=ram_mib * MIB,
        reserve_bytes=reserve_mib * MIB,
        unified_memory=mem.flag("unified", False),
        bandwidth_gbps=mem.number("bandwidth_gbps", minimum=0.001),
        bandwidth_measured_gbps=mem.number("bandwidth_measured_gbps", 0.0),
        gpu=gpu.text("name", ""),
        npu=f.section("npu", required=False).text("name", ""),
        disk_bytes=int(storage.number("disk_gb", 0.0) * 1e9),
        idle_w=power.number("idle_w", 0.0),
        load_w=power.number("load_w", 0.0),
        scale_of=f.text("scale_of", ""),
        sources=sources,
        compute_gflops=compute.number("gflops", 0.0),
        accelerated=offload,
        clock_ghz=cpu.number("clock_ghz", 0.0),
        simd_bits=cpu.whole("simd_bits", 0),
        simd_pipes=cpu.number("simd_pipes", 0.0),
        threads=threads,
        gpu_backend=backend if offload else "",
        gpu_tflops=gpu.number("tflops", 0.0),
        gpu_clock_ghz=gpu.number("clock_ghz", 0.0),
        cooling=_choice(thermal, "cooling", COOLING),
        throttled_clock_ghz=thermal.number("throttled_clock_ghz", 0.0),
        decode_bandwidth_gbps=mem.number("decode_bandwidth_gbps", 0.0),
        power_mode=power.text("mode", ""),
    )


DEFAULT_RESERVE_FRACTION = 0.15
OFFLOAD_LABEL = "offload="  # the agent's runtime label: "llama.cpp 0.3.36 offload=cuda"


def llama_offload(runtimes: tuple[str, ...]) -> tuple[str, ...] | None:
    """The GPU backends the agent's llama.cpp offloads to, from its runtime labels; None when
    it reported no llama.cpp (nothing to say), () when it runs on the CPU (an agent before
    offload support always did)."""
    for label in runtimes:
        words = label.split()
        if words and words[0] == "llama.cpp":
            return tuple(b for w in words[1:] if w.startswith(OFFLOAD_LABEL)
                         for b in w.removeprefix(OFFLOAD_LABEL).split(",") if b)
    return None


def offload_as_reported(base: Profile, offload: tuple[str, ...] | None) -> Profile:
    """``base`` predicted on the GPU backend the agent's llama.cpp really offloads to: a
    profile that declares offload keeps it when the agent's build has that backend, takes
    the build's other backend when it has one (the first in name order), and is predicted on
    the CPU when it has none; a profile without offload stays on the CPU. ``gpu_note`` says
    whenever the prediction and the agent's build disagree with the declaration."""
    if offload is None or (base.accelerated and base.gpu_backend in offload):
        return base
    usable = [b for b in offload if b in GPU_BACKENDS]  # the agent lists them sorted
    if not base.accelerated:
        if not usable:
            return base
        return replace(base, gpu_note=(
            f"the agent's llama.cpp offloads to {usable[0]}, which this profile does not "
            "declare: predicted on the CPU (declare [gpu] offload and backend in the "
            "profile, or set FLEET_AGENT_GPU_LAYERS=0 on the device)"))
    if usable:
        return replace(base, gpu_backend=usable[0],
                       gpu_note=f"the agent's llama.cpp offloads to {usable[0]}, not "
                                f"{base.gpu_backend or 'the declared backend'}")
    return replace(base, accelerated=False, gpu_backend="",
                   gpu_note="the agent's llama.cpp has no GPU backend: predicted on the CPU")


def overlay_probe(
    base: Profile | None,
    name: str,
    *,
    arch: str,
    cores: int,
    isa: tuple[str, ...],
    ram_bytes: int,
    disk_free_bytes: int,
    bandwidth_gbps: float,
    title: str,
    runtimes: tuple[str, ...] = (),
    execution_providers: tuple[str, ...] = (),
    decode_efficiency: float = 0.0,
    calibration_backend: str = "",
    bandwidth_method: str = "",
    llama_offload: tuple[str, ...] | None = None,
) -> Profile:
    """A device's probed numbers laid over its declared profile: probed values win.

    The probe's measured bandwidth becomes the profile's measured figure, which the cost model
    prefers to the spec sheet. An emulated device (``bandwidth_method == "profile"``) only
    echoes its profile's figure back, so that is not taken as a measurement. Without a declared
    profile the reserve is 15 % of RAM and power is unknown. ``llama_offload`` (the backends
    the agent's llama.cpp offloads to) decides whether the GPU path is predicted; a calibrated
    ``decode_efficiency`` applies only on the backend it was measured on
    (``calibration_backend``; "" = cpu, as every calibration before offload support was): a
    CPU share says nothing of the GPU path.
    """
    measured = bandwidth_gbps if bandwidth_method != ECHOED_BANDWIDTH else 0.0
    if base is None:
        base = Profile(name=name, title=name, kind="device", arch=arch, cores=max(cores, 1),
                       isa=isa, ram_bytes=ram_bytes,
                       reserve_bytes=int(ram_bytes * DEFAULT_RESERVE_FRACTION),
                       unified_memory=False, bandwidth_gbps=bandwidth_gbps,
                       bandwidth_measured_gbps=0.0)
    base = offload_as_reported(base, llama_offload)
    if (calibration_backend or "cpu") != backend_of(base):
        decode_efficiency = 0.0
    return replace(
        base,
        title=title or base.title,
        arch=arch or base.arch,
        cores=cores or base.cores,
        threads=min(base.threads, cores) if cores else base.threads,
        isa=isa or base.isa,
        ram_bytes=ram_bytes or base.ram_bytes,
        bandwidth_measured_gbps=measured or base.bandwidth_measured_gbps,
        bandwidth_method=(bandwidth_method or "probe") if measured else base.bandwidth_method,
        disk_bytes=disk_free_bytes or base.disk_bytes,
        decode_efficiency=decode_efficiency or base.decode_efficiency,
        runtimes=runtimes,
        execution_providers=execution_providers,
    )
