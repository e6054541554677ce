"""Accelerators: NVIDIA GPUs, Jetson release and power mode, NPUs. Parsers are pure."""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class JetsonFacts:
    l4t_release: str = ""
    power_mode: str = ""
    gpu: str = ""


def parse_nv_tegra_release(text: str) -> str:
    """``# R36 (release), REVISION: 4.3, ...`` -> ``R36.4.3``."""
    m = re.search(r"#\s*R(\d+)\s*\(release\),\s*REVISION:\s*([\d.]+)", text)
    return f"R{m.group(1)}.{m.group(2)}" if m else ""


def parse_nvpmodel(text: str) -> str:
    """``nvpmodel -q`` prints ``NV Power Mode: MAXN_SUPER`` then the mode id."""
    m = re.search(r"NV Power Mode:\s*(\S+)", text)
    return m.group(1) if m else ""


def parse_nvidia_smi(csv: str) -> list[tuple[str, int]]:
    """Rows of ``--query-gpu=name,memory.total,... --format=csv,noheader,nounits``."""
    gpus = []
    for line in csv.strip().splitlines():
        cells = [c.strip() for c in line.split(",")]
        if len(cells) >= 2 and cells[1].isdigit():
            gpus.append((cells[0], int(cells[1]) * 1024 * 1024))
    return gpus


def _run(args: list[str], timeout: float = 5.0) -> str:
    if shutil.which(args[0]) is None:
        return ""
    try:
        return subprocess.run(args, capture_output=True, text=True, timeout=timeout).stdout
    except (OSError, subprocess.TimeoutExpired):
        return ""


def jetson(root: Path = Path("/")) -> JetsonFacts:
    release_file = root / "etc/nv_tegra_release"
    if not release_file.exists():
        return JetsonFacts()
    release = parse_nv_tegra_release(release_file.read_text(errors="replace"))
    mode = parse_nvpmodel(_run(["nvpmodel", "-q"])) if root == Path("/") else ""
    return JetsonFacts(release, mode, "NVIDIA Orin integrated GPU (shared memory)")


def nvidia_gpu() -> str:
    gpus = parse_nvidia_smi(_run(["nvidia-smi", "--query-gpu=name,memory.total,driver_version",
                                  "--format=csv,noheader,nounits"]))
    return ", ".join(f"{name} ({mem // 2**30} GiB)" for name, mem in gpus)


def npu(root: Path = Path("/")) -> str:
    """Name the NPU whose device node or driver is present, '' if none."""
    found = []
    for accel in sorted((root / "sys/class/accel").glob("accel*")):
        driver = accel / "device" / "driver"
        name = driver.resolve().name if driver.exists() else "accel"
        found.append({"intel_vpu": "Intel NPU (intel_vpu)"}.get(name, f"{name} ({accel.name})"))
    if list((root / "dev").glob("fastrpc-*")):
        found.append("Qualcomm Hexagon (fastrpc)")
    if (root / "sys/kernel/debug/rknpu").exists() or (root / "dev/rknpu").exists() or (
            root / "sys/module/rknpu").exists():
        found.append("Rockchip RKNPU")
    return ", ".join(found)


SYSCTL_KEYS = ("hw.memsize", "hw.ncpu", "machdep.cpu.brand_string",
               "hw.perflevel0.physicalcpu", "hw.perflevel1.physicalcpu")


@dataclass(frozen=True)
class AppleFacts:
    chip: str
    ram_bytes: int
    cores: int
    clusters: tuple[str, ...]
    gpu: str


def parse_sysctl(text: str) -> AppleFacts:
    """``sysctl hw.memsize hw.ncpu machdep.cpu.brand_string hw.perflevel0.physicalcpu
    hw.perflevel1.physicalcpu`` on macOS (Apple silicon: perflevel0 = performance cores)."""
    values: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep:
            values[key.strip()] = value.strip()
    chip = values.get("machdep.cpu.brand_string", "")
    perf, eff = values.get("hw.perflevel0.physicalcpu"), values.get("hw.perflevel1.physicalcpu")
    clusters = tuple(c for c in (f"{perf}x performance" if perf else "",
                                 f"{eff}x efficiency" if eff else "") if c)
    return AppleFacts(chip, int(values.get("hw.memsize", "0") or 0),
                      int(values.get("hw.ncpu", "0") or 0), clusters,
                      f"{chip} GPU (Metal, unified memory)" if chip.startswith("Apple") else "")


def apple() -> AppleFacts | None:
    import platform

    if platform.system() != "Darwin":
        return None
    return parse_sysctl(_run(["sysctl", *SYSCTL_KEYS]))
