"""Is the device throttling right now, and why: read where each platform says it.

- Raspberry Pi firmware ``get_throttled`` (sysfs ``soc:firmware/get_throttled``, else
  ``vcgencmd get_throttled``): bit 0 under-voltage, 1 ARM frequency capped, 2 throttled,
  3 soft temperature limit, all "now"; bits 16-19 are the same since boot (not reported: a
  device that browned out once last week is not throttling now). The ``rpi_volt`` hwmon's
  ``in0_lcrit_alarm`` is the under-voltage bit on kernels without the firmware node.
- Thermal zones: a zone at or above one of its ``passive`` or ``hot`` trip points is being
  cooled by slowing the CPU (or about to be shut down at ``critical``).
- Cooling devices of type ``cpufreq-*`` / ``thermal-cpufreq-*`` with ``cur_state > 0``: the
  kernel's thermal governor holds the CPU below its maximum frequency.
- cpufreq: ``scaling_max_freq`` below ``cpuinfo_max_freq`` (a cap set by firmware, thermal or
  a power mode); the current frequency alone says nothing (an idle governor lowers it).

Every reader takes a root path, so tests run on sysfs trees laid out as the kernel does.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

PI_FIRMWARE_NODE = "sys/devices/platform/soc/soc:firmware/get_throttled"
PI_BITS_NOW = {0: "pi:under-voltage", 1: "pi:arm-frequency-capped", 2: "pi:throttled",
               3: "pi:soft-temperature-limit"}
TRIP_KINDS = ("passive", "hot", "critical")


@dataclass(frozen=True)
class Throttling:
    throttled: bool
    reasons: list[str] = field(default_factory=list)
    cpu_freq_mhz: float = 0.0  # fastest core's current frequency
    cpu_max_freq_mhz: float = 0.0  # its hardware maximum


def parse_get_throttled(text: str) -> list[str]:
    """``throttled=0x50005``, ``0x50005`` or ``50005`` (hex) -> the conditions active now."""
    raw = text.strip().rpartition("=")[2].strip()
    try:
        value = int(raw, 16)
    except ValueError:
        return []
    return [name for bit, name in PI_BITS_NOW.items() if value & (1 << bit)]


def _read(path: Path) -> str:
    try:
        return path.read_text().strip()
    except OSError:
        return ""


def _int(path: Path) -> int | None:
    try:
        return int(_read(path))
    except ValueError:
        return None


def thermal_trips(root: Path) -> list[str]:
    """Zones at or above a passive/hot/critical trip point, with their numbers."""
    found = []
    for zone in sorted((root / "sys/class/thermal").glob("thermal_zone*")):
        temp = _int(zone / "temp")
        if temp is None:
            continue
        kind = _read(zone / "type") or zone.name
        for trip_type in sorted(zone.glob("trip_point_*_type")):
            trip_kind = _read(trip_type)
            if trip_kind not in TRIP_KINDS:
                continue
            limit = _int(trip_type.with_name(trip_type.name.replace("_type", "_temp")))
            if limit is not None and limit > 0 and temp >= limit:
                found.append(f"thermal:{kind} {temp / 1000:.1f}>={limit / 1000:.1f} C "
                             f"{trip_kind}")
                break
    return found


def cooling_states(root: Path) -> list[str]:
    """CPU frequency cooling devices holding the CPU down (cur_state > 0)."""
    found = []
    for dev in sorted((root / "sys/class/thermal").glob("cooling_device*")):
        kind = _read(dev / "type")
        if "cpufreq" not in kind:
            continue
        cur, top = _int(dev / "cur_state"), _int(dev / "max_state")
        if cur:
            found.append(f"cooling:{kind} state {cur}/{top if top is not None else '?'}")
    return found


def cpufreq(root: Path) -> tuple[float, float, list[str]]:
    """(fastest current MHz, its hardware max MHz, caps) over the CPUs' cpufreq policies."""
    cur_best, max_best, caps = 0.0, 0.0, []
    policies = sorted((root / "sys/devices/system/cpu/cpufreq").glob("policy*")) or sorted(
        (root / "sys/devices/system/cpu").glob("cpu[0-9]*/cpufreq"))
    for policy in policies:
        cur = _int(policy / "scaling_cur_freq")
        hw_max = _int(policy / "cpuinfo_max_freq")
        cap = _int(policy / "scaling_max_freq")
        if cur is not None and cur / 1000 > cur_best:
            cur_best = cur / 1000
            max_best = (hw_max or 0) / 1000
        if hw_max and cap and cap < hw_max:
            caps.append(f"cpufreq:{policy.name} capped {cap / 1000:.0f}/{hw_max / 1000:.0f} MHz")
    return cur_best, max_best, caps


def pi_undervoltage_alarm(root: Path) -> list[str]:
    for hwmon in sorted((root / "sys/class/hwmon").glob("hwmon*")):
        if _read(hwmon / "name") == "rpi_volt" and _read(hwmon / "in0_lcrit_alarm") == "1":
            return ["pi:under-voltage"]
    return []


def _vcgencmd() -> str:
    exe = shutil.which("vcgencmd")
    if exe is None:
        return ""
    try:
        return subprocess.run([exe, "get_throttled"], capture_output=True, text=True,
                              timeout=2, check=False).stdout
    except (OSError, subprocess.SubprocessError):
        return ""


class ThrottleProbe:
    """Reads the sources above from ``root``; ``vcgencmd`` is asked only on a Pi whose kernel
    has no firmware node (and never with a root other than ``/``)."""

    def __init__(self, root: Path = Path("/"),
                 vcgencmd: Callable[[], str] | None = None) -> None:
        self.root = root
        self._vcgencmd = vcgencmd if vcgencmd is not None else (
            _vcgencmd if root == Path("/") else (lambda: ""))
        self._is_pi = "Raspberry Pi" in _read(root / "proc/device-tree/model").replace("\0", "")

    def read(self) -> Throttling:
        reasons: list[str] = []
        node = self.root / PI_FIRMWARE_NODE
        if node.exists():
            reasons += parse_get_throttled(_read(node))
        elif self._is_pi:
            reasons += parse_get_throttled(self._vcgencmd())
        if "pi:under-voltage" not in reasons:
            reasons += pi_undervoltage_alarm(self.root)
        reasons += thermal_trips(self.root)
        reasons += cooling_states(self.root)
        cur, top, caps = cpufreq(self.root)
        reasons += caps
        return Throttling(bool(reasons), reasons, cur, top)
