"""What the agent reports about itself: the probed host, or a lab profile laid over it.

An emulated device reports the profile's RAM, cores, ISA, bandwidth, GPU and NPU, marks itself
``emulated``, keeps the real host numbers beside them, and limits itself to the profile: it uses
at most the profile's cores as threads and refuses loads past the profile's memory budget.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from agent.probe import HostFacts

MIB = 1024 * 1024


@dataclass(frozen=True)
class DeviceView:
    """The device as the agent presents it and budgets for it."""

    name: str
    emulated: bool
    device_model: str
    arch: str
    cpu_model: str
    cores: int
    cpu_flags: tuple[str, ...]
    ram_total_bytes: int
    reserve_bytes: int
    gpu: str
    npu: str
    mem_bandwidth_gbps: float
    disk_limit_bytes: int  # 0: no limit beyond the real disk
    idle_w: float = 0.0  # profile power figures, for estimated energy
    load_w: float = 0.0


def host_view(host: HostFacts, reserve_bytes: int, bandwidth_gbps: float = 0.0) -> DeviceView:
    return DeviceView(
        name="",
        emulated=False,
        device_model=host.device_model,
        arch=host.arch,
        cpu_model=host.cpu.model,
        cores=host.cpu.cores,
        cpu_flags=host.cpu.flags,
        ram_total_bytes=host.ram_total_bytes,
        reserve_bytes=reserve_bytes,
        gpu=host.gpu,
        npu=host.npu,
        mem_bandwidth_gbps=bandwidth_gbps,
        disk_limit_bytes=0,
    )


def emulated_view(host: HostFacts, profile: dict[str, Any]) -> DeviceView:
    """Lay ``profile`` (a parsed profile TOML) over the host. Threads never exceed real cores."""
    cpu = profile.get("cpu", {})
    mem = profile.get("memory", {})
    storage = profile.get("storage", {})
    bandwidth = float(mem.get("bandwidth_measured_gbps") or mem.get("bandwidth_gbps") or 0.0)
    return DeviceView(
        name=str(profile.get("name", "")),
        emulated=True,
        device_model=str(profile.get("title", profile.get("name", ""))),
        arch=str(cpu.get("arch", host.arch)),
        cpu_model=str(cpu.get("model", "")),
        cores=max(1, min(int(cpu.get("cores", host.cpu.cores)), host.cpu.cores)),
        cpu_flags=tuple(str(f) for f in cpu.get("isa", [])),
        ram_total_bytes=int(mem.get("ram_mib", 0)) * MIB,
        reserve_bytes=int(mem.get("reserve_mib", 0)) * MIB,
        gpu=str(profile.get("gpu", {}).get("name", "")),
        npu=str(profile.get("npu", {}).get("name", "")),
        mem_bandwidth_gbps=bandwidth,
        disk_limit_bytes=int(float(storage.get("disk_gb", 0)) * 1e9),
        idle_w=float(profile.get("power", {}).get("idle_w", 0.0)),
        load_w=float(profile.get("power", {}).get("load_w", 0.0)),
    )
