"""Energy and power meters, each reading from a root path so tests run on sysfs trees.

Counters (µJ, cumulative): RAPL powercap (top-level package zones only, 64-bit, wrapping at
``max_energy_range_uj``) and hwmon ``energy*_input``. Power meters (W, instantaneous):
Jetson INA3221 (JetPack 5/6 hwmon ``in*/curr*`` and JetPack 4 iio ``in_power*``; ``VDD_IN``
is the module total), Raspberry Pi 5 PMIC (``vcgencmd pmic_read_adc``: sum of A x V per rail),
hwmon ``power*_input`` and battery ``power_supply``. ``agent.energy`` integrates power meters.

Each meter says how often it is worth reading while a generation runs (``busy_s``) and while
the device idles (``idle_s``), from what the source can give (shared/facts.md 5.7): a counter
integrates in hardware and only has to be read well within its wrap period (>= 1 Hz); a power
meter is integrated from its readings (10 Hz), except the Pi 5 PMIC, whose read takes ~23 ms of
firmware time behind a process spawn, and a battery, whose reading most drivers update about
once a second. Idle power is steady, so a slow pace loses nothing there and keeps an idle
device's CPU (and a battery's wake-ups) to a reading every few seconds.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path


def _int(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


def _text(path: Path) -> str:
    try:
        return path.read_text().strip()
    except OSError:
        return ""


@dataclass(frozen=True)
class RaplZone:
    path: Path
    max_uj: int


class RaplMeter:
    """Sum of the top-level ``intel-rapl:N`` zones (sub-zones would double count)."""

    name = "rapl"
    busy_s = idle_s = 1.0  # a counter: read at the request's start and end, and for wraps

    def __init__(self, zones: list[RaplZone]) -> None:
        self.zones = zones

    @classmethod
    def find(cls, root: Path) -> RaplMeter | None:
        base = root / "sys/class/powercap"
        zones = []
        for d in sorted(base.glob("intel-rapl:*")):
            if d.name.count(":") != 1 or _int(d / "energy_uj") is None:
                continue  # a sub-zone, or not readable (root-only since CVE-2020-8694)
            zones.append(RaplZone(d, _int(d / "max_energy_range_uj") or 0))
        return cls(zones) if zones else None

    def read(self) -> list[int]:
        return [_int(z.path / "energy_uj") or 0 for z in self.zones]

    def delta_uj(self, before: list[int], after: list[int]) -> int:
        total = 0
        for zone, a, b in zip(self.zones, before, after, strict=True):
            d = b - a
            if d < 0:  # the counter wrapped (sample faster than one wrap period)
                d += zone.max_uj
            total += max(d, 0)
        return total


class HwmonEnergyMeter:
    """hwmon ``energy*_input`` (µJ, cumulative), e.g. AMD ``amd_energy`` sockets."""

    name = "hwmon-energy"
    busy_s = idle_s = 1.0

    def __init__(self, files: list[Path]) -> None:
        self.files = files

    @classmethod
    def find(cls, root: Path) -> HwmonEnergyMeter | None:
        files = []
        for f in sorted((root / "sys/class/hwmon").glob("hwmon*/energy*_input")):
            label = _text(f.with_name(f.name.replace("_input", "_label")))
            if label.startswith("Ecore"):
                continue  # amd_energy: sum sockets only
            files.append(f)
        return cls(files) if files else None

    def read(self) -> list[int]:
        return [_int(f) or 0 for f in self.files]

    def delta_uj(self, before: list[int], after: list[int]) -> int:
        # no max attribute: treat as monotonic, but never count a reset as negative energy
        return sum(max(b - a, 0) for a, b in zip(before, after, strict=True))


class PowerMeter:
    """An instantaneous power reading in watts; read every ``busy_s`` seconds while a
    generation runs, every ``idle_s`` otherwise."""

    def __init__(self, name: str, read: Callable[[], float | None], busy_s: float = 0.1,
                 idle_s: float = 2.0) -> None:
        self.name = name
        self._read = read
        self.busy_s = busy_s
        self.idle_s = idle_s

    def watts(self) -> float | None:
        return self._read()


def ina3221_jp5(root: Path) -> PowerMeter | None:
    for hw in sorted(root.glob("sys/bus/i2c/drivers/ina3221/*/hwmon/hwmon*")):
        rails = {}
        for label in sorted(hw.glob("in*_label")):
            name = _text(label)
            n = label.name[2:-6]
            if not name or "NC" in name or n == "7":
                continue
            rails[name] = (hw / f"in{n}_input", hw / f"curr{n}_input")
        if rails:
            def read(rails: dict[str, tuple[Path, Path]] = rails) -> float | None:
                return _rails_watts(rails)
            return PowerMeter("ina3221:" + ("VDD_IN" if "VDD_IN" in rails else "sum"), read)
    return None


def _rails_watts(rails: dict[str, tuple[Path, Path]]) -> float | None:
    def watts(pair: tuple[Path, Path]) -> float | None:
        mv, ma = _int(pair[0]), _int(pair[1])
        return None if mv is None or ma is None else mv * ma / 1e6

    if "VDD_IN" in rails:
        return watts(rails["VDD_IN"])
    values = [w for w in map(watts, rails.values()) if w is not None]
    return sum(values) if values else None


def ina3221_jp4(root: Path) -> PowerMeter | None:
    for dev in sorted(root.glob("sys/bus/i2c/drivers/ina3221x/*/iio:device*")):
        rails = {}
        for rail in sorted(dev.glob("rail_name_*")):
            name = _text(rail)
            if name and "NC" not in name:
                rails[name] = dev / f"in_power{rail.name.rsplit('_', 1)[1]}_input"
        if rails:
            total = "VDD_IN" if "VDD_IN" in rails else ("POM_5V_IN" if "POM_5V_IN" in rails
                                                         else "")

            def read(rails: dict[str, Path] = rails, total: str = total) -> float | None:
                chosen = [rails[total]] if total else list(rails.values())
                mw = [_int(p) for p in chosen]
                return None if None in mw else sum(m or 0 for m in mw) / 1000
            return PowerMeter("ina3221:" + (total or "sum"), read)
    return None


_PMIC_LINE = re.compile(r"^\s*(?P<rail>\S+?)_(?P<kind>[AV])\s+(?:current|volt)\(\d+\)="
                        r"(?P<value>[\d.]+)[AV]\s*$")


def parse_pmic_read_adc(text: str) -> float:
    """Raspberry Pi 5 ``vcgencmd pmic_read_adc``: sum of A x V over rails with both."""
    amps: dict[str, float] = {}
    volts: dict[str, float] = {}
    for line in text.splitlines():
        m = _PMIC_LINE.match(line)
        if m:
            (amps if m["kind"] == "A" else volts)[m["rail"]] = float(m["value"])
    return sum(a * volts[rail] for rail, a in amps.items() if rail in volts)


def pmic(root: Path, run: Callable[[], str] | None = None) -> PowerMeter | None:
    if run is None:
        if root != Path("/") or shutil.which("vcgencmd") is None:
            return None

        def run() -> str:
            return subprocess.run(["vcgencmd", "pmic_read_adc"], capture_output=True,
                                  text=True, timeout=2).stdout
    if parse_pmic_read_adc(run()) <= 0:
        return None
    return PowerMeter("pi5-pmic", lambda: parse_pmic_read_adc(run()) or None, busy_s=0.5,
                      idle_s=10.0)


def hwmon_power(root: Path) -> PowerMeter | None:
    files = sorted((root / "sys/class/hwmon").glob("hwmon*/power*_input"))
    if not files:
        return None

    def read() -> float | None:
        uw = [_int(f) for f in files]
        return None if None in uw else sum(u or 0 for u in uw) / 1e6
    return PowerMeter("hwmon-power", read)


def battery(root: Path) -> PowerMeter | None:
    for d in sorted((root / "sys/class/power_supply").glob("*")):
        if _text(d / "type") != "Battery":
            continue

        def read(d: Path = d) -> float | None:
            uw = _int(d / "power_now")
            if uw is not None:
                return abs(uw) / 1e6
            uv, ua = _int(d / "voltage_now"), _int(d / "current_now")
            return None if uv is None or ua is None else abs(uv * ua) / 1e12
        if read() is not None:
            return PowerMeter(f"battery:{d.name}", read, busy_s=1.0, idle_s=10.0)
    return None
