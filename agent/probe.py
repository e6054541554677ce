"""Hardware probe. Parsers are pure functions over the text of the file they read."""

from __future__ import annotations

import os
import platform
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path

from agent import offload

# ISA features that decide which llama.cpp / onnxruntime kernels run.
KERNEL_FLAGS = frozenset(
    {
        "neon", "asimd", "asimddp", "i8mm", "sve", "sve2", "bf16", "fphp", "asimdhp",
        "avx", "avx2", "fma", "f16c", "avx512f", "avx512_vnni", "avx512_bf16", "avx_vnni",
        "amx_tile", "amx_int8", "amx_bf16",
    }
)


@dataclass(frozen=True)
class CpuInfo:
    model: str
    cores: int
    flags: tuple[str, ...]
    clusters: tuple[str, ...] = ()  # big.LITTLE: e.g. ("4x Cortex-A55", "4x Cortex-A76")


@dataclass(frozen=True)
class HostFacts:
    arch: str
    cpu: CpuInfo
    ram_total_bytes: int
    ram_available_bytes: int
    device_model: str
    os: str
    python: str
    runtimes: tuple[str, ...] = field(default_factory=tuple)
    swap_total_bytes: int = 0
    gpu: str = ""
    npu: str = ""
    l4t_release: str = ""  # Jetson: L4T release from /etc/nv_tegra_release
    power_mode: str = ""  # Jetson: nvpmodel mode
    execution_providers: tuple[str, ...] = ()  # onnxruntime EPs available here


def parse_meminfo(text: str) -> dict[str, int]:
    """Return /proc/meminfo fields in bytes (the file states kB = KiB)."""
    out: dict[str, int] = {}
    for line in text.splitlines():
        key, _, rest = line.partition(":")
        parts = rest.split()
        if not parts or not parts[0].isdigit():
            continue
        value = int(parts[0])
        if len(parts) > 1 and parts[1] == "kB":
            value *= 1024
        out[key.strip()] = value
    return out


def parse_cpuinfo(text: str) -> CpuInfo:
    """Model name, logical core count and kernel-relevant flags from /proc/cpuinfo.

    x86 writes ``model name`` and ``flags``; ARM writes ``Features`` and a ``CPU part`` per core,
    and sometimes a global ``Model`` / ``Hardware`` line.
    """
    processors = 0
    model = ""
    flags: set[str] = set()
    parts: dict[str, int] = {}
    for line in text.splitlines():
        key, _, value = (s.strip() for s in line.partition(":"))
        if key == "processor":
            processors += 1
        elif key == "model name" and not model:
            model = value
        elif key in ("flags", "Features"):
            flags.update(value.split())
        elif key == "CPU part":
            parts[value] = parts.get(value, 0) + 1
    clusters = tuple(f"{n}x {ARM_PARTS.get(p, p)}" for p, n in sorted(parts.items()))
    if not model and parts:
        model = " + ".join(clusters)
    return CpuInfo(model=model, cores=processors, flags=tuple(sorted(flags & KERNEL_FLAGS)),
                   clusters=clusters)


# MIDR part numbers of the cores edge boards use (ARM TRM tables).
ARM_PARTS = {
    "0xd03": "Cortex-A53",
    "0xd05": "Cortex-A55",
    "0xd08": "Cortex-A72",
    "0xd0b": "Cortex-A76",
    "0xd42": "Cortex-A78AE",
    "0xd41": "Cortex-A78",
    "0xd44": "Cortex-X1",
}


def parse_device_tree_model(raw: bytes) -> str:
    """/proc/device-tree/model is NUL-terminated."""
    return raw.split(b"\0", 1)[0].decode("utf-8", "replace").strip()


def _read_text(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except OSError:
        return ""


def device_model(root: Path = Path("/")) -> str:
    dt = root / "proc/device-tree/model"
    if dt.exists():
        return parse_device_tree_model(dt.read_bytes())
    product = _read_text(root / "sys/class/dmi/id/product_name").strip()
    vendor = _read_text(root / "sys/class/dmi/id/sys_vendor").strip()
    return " ".join(p for p in (vendor, product) if p)


def installed_runtimes() -> tuple[str, ...]:
    from importlib import metadata

    found = []
    for dist, label in (("llama-cpp-python", "llama.cpp"), ("onnxruntime", "onnxruntime")):
        try:
            found.append(f"{label} {metadata.version(dist)}")
        except metadata.PackageNotFoundError:
            continue
        if label == "llama.cpp" and (backends := offload.gpu_backends()):
            found[-1] += f" {offload.LABEL_PREFIX}{','.join(backends)}"
    return tuple(found)


def execution_providers() -> tuple[str, ...]:
    try:
        import onnxruntime
    except ImportError:
        return ()
    return tuple(onnxruntime.get_available_providers())


def probe_host(root: Path = Path("/")) -> HostFacts:
    from agent import probe_devices

    mem = parse_meminfo(_read_text(root / "proc/meminfo"))
    cpu = parse_cpuinfo(_read_text(root / "proc/cpuinfo"))
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    cpu = CpuInfo(model=cpu.model or platform.processor(), cores=cores or cpu.cores or 1,
                  flags=cpu.flags, clusters=cpu.clusters)
    jetson = probe_devices.jetson(root)
    mac = probe_devices.apple() if root == Path("/") else None
    if mac is not None:  # no /proc on macOS: sysctl tells RAM, chip and core clusters
        cpu = CpuInfo(model=mac.chip, cores=mac.cores or cpu.cores, flags=cpu.flags,
                      clusters=mac.clusters)
        mem = {"MemTotal": mac.ram_bytes, **mem}
    return HostFacts(
        arch=platform.machine(),
        cpu=cpu,
        ram_total_bytes=mem.get("MemTotal", 0),
        ram_available_bytes=mem.get("MemAvailable", mem.get("MemFree", 0)),
        device_model=device_model(root),
        os=f"{platform.system()} {platform.release()}",
        python=sys.version.split()[0],
        runtimes=installed_runtimes(),
        swap_total_bytes=mem.get("SwapTotal", 0),
        gpu=jetson.gpu or (mac.gpu if mac else "") or probe_devices.nvidia_gpu(),
        npu=probe_devices.npu(root),
        l4t_release=jetson.l4t_release,
        power_mode=jetson.power_mode,
        execution_providers=execution_providers(),
    )


def disk_usage(path: Path) -> tuple[int, int]:
    """(free, total) bytes of the file system holding ``path``."""
    usage = shutil.disk_usage(path)
    return usage.free, usage.total
