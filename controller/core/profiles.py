"""Parse a hardware profile (TOML already read into a dict) into a ``Profile``."""

from __future__ import annotations

from typing import Any

from controller.core.models import MIB, Profile
from controller.core.validation import Fields
from controller.errors import InvalidData

KINDS = ("device", "lab-scale-model")


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
    ram_mib = mem.whole("ram_mib", minimum=1)
    reserve_mib = mem.whole("reserve_mib", minimum=0)
    if reserve_mib >= ram_mib:
        raise InvalidData(f"{origin}: field 'memory.reserve_mib' must be below memory.ram_mib")
    sources = f.texts("sources")
    if kind == "device" and not sources:
        raise InvalidData(f"{origin}: field 'sources' must cite where the numbers come from")
    return Profile(
        name=f.text("name"),
        title=f.text("title"),
        kind=kind,
        arch=cpu.text("arch"),
        cores=cpu.whole("cores", minimum=1),
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
        accelerated=gpu.flag("offload", False),
    )


DEFAULT_RESERVE_FRACTION = 0.15


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
) -> Profile:
    """A device's probed numbers laid over its declared profile: probed values win.

    Without a declared profile the reserve is 15 % of RAM and power is unknown.
    """
    reserve = base.reserve_bytes if base else int(ram_bytes * DEFAULT_RESERVE_FRACTION)
    return Profile(
        name=base.name if base else name,
        title=title or (base.title if base else name),
        kind=base.kind if base else "device",
        arch=arch or (base.arch if base else ""),
        cores=cores or (base.cores if base else 1),
        isa=isa or (base.isa if base else ()),
        ram_bytes=ram_bytes or (base.ram_bytes if base else 0),
        reserve_bytes=reserve,
        unified_memory=base.unified_memory if base else False,
        bandwidth_gbps=(base.bandwidth_gbps if base else 0.0) or bandwidth_gbps,
        bandwidth_measured_gbps=bandwidth_gbps or (base.bandwidth_measured_gbps if base else 0.0),
        gpu=base.gpu if base else "",
        npu=base.npu if base else "",
        disk_bytes=disk_free_bytes or (base.disk_bytes if base else 0),
        idle_w=base.idle_w if base else 0.0,
        load_w=base.load_w if base else 0.0,
        scale_of=base.scale_of if base else "",
        sources=base.sources if base else (),
        compute_gflops=base.compute_gflops if base else 0.0,
        accelerated=base.accelerated if base else False,
        decode_efficiency=decode_efficiency or (base.decode_efficiency if base else 0.0),
        runtimes=runtimes,
        execution_providers=execution_providers,
    )
