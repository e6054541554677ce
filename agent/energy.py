"""Energy accounting: pick the best meter this device has and keep a cumulative joule count.

Order: RAPL, hwmon energy counters, Jetson INA3221 (JetPack 5/6, then 4), Raspberry Pi 5
PMIC, hwmon power, battery. Without any, an estimate from CPU utilisation and the profile's
idle/load watts, labelled ``estimated`` (never mixed with measured joules); without power
figures either, ``none``. A daemon thread reads the meter and integrates power (trapezoid):
at the meter's own pace while a generation, an ONNX inference or an output check runs
(``busy``: 10 Hz for most power meters), slowly while the device idles (2 s; the PMIC and a
battery 10 s); counters, which integrate in hardware and need reading only well within a
wrap, every 1 s throughout (``agent.energy_meters``). A generation's own joules come from
readings at its start and end whatever the pace.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from agent import energy_meters as m

ESTIMATE_BUSY_S = 0.1  # /proc/stat counts jiffies (10 ms): finer says nothing more
ESTIMATE_IDLE_S = 2.0


def parse_proc_stat(text: str) -> tuple[int, int]:
    """(busy, total) jiffies of the aggregate ``cpu`` line of /proc/stat."""
    for line in text.splitlines():
        if line.startswith("cpu "):
            values = [int(v) for v in line.split()[1:]]
            idle = values[3] + (values[4] if len(values) > 4 else 0)
            return sum(values) - idle, sum(values)
    return 0, 0


class EnergyTracker:
    def __init__(self, root: Path = Path("/"), idle_w: float = 0.0, load_w: float = 0.0,
                 pmic_run: Callable[[], str] | None = None, use_meters: bool = True) -> None:
        self.root = root
        self.idle_w = idle_w
        self.load_w = load_w
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._wake = threading.Event()  # a generation started: read at its pace from now
        self._busy = 0  # generations running
        self._busy_lock = threading.Lock()  # not ``_lock``: a slow reading holds that
        self._thread: threading.Thread | None = None
        self._uj = 0.0
        self._last_t = time.monotonic()
        self._last_w: float | None = None
        self._cpu = parse_proc_stat(self._read_stat())
        self.counter: m.RaplMeter | m.HwmonEnergyMeter | None = None
        self.power: m.PowerMeter | None = None
        if use_meters:
            self.counter = m.RaplMeter.find(root) or m.HwmonEnergyMeter.find(root)
        if use_meters and self.counter is None:
            self.power = (m.ina3221_jp5(root) or m.ina3221_jp4(root)
                          or m.pmic(root, pmic_run) or m.hwmon_power(root) or m.battery(root))
        self._raw = self.counter.read() if self.counter else []
        if self.counter:
            self.meter = self.counter.name
        elif self.power:
            self.meter = self.power.name
        else:
            self.meter = "estimated" if load_w > 0 else "none"
        self.measured = self.meter not in ("estimated", "none")

    def _read_stat(self) -> str:
        try:
            return (self.root / "proc/stat").read_text()
        except OSError:
            return ""

    def _estimated_watts(self) -> float:
        busy, total = parse_proc_stat(self._read_stat())
        d_busy, d_total = busy - self._cpu[0], total - self._cpu[1]
        if d_total <= 0:  # no jiffy has passed since the last sample: keep the last estimate
            return self._last_w if self._last_w is not None else self.idle_w
        self._cpu = (busy, total)
        util = d_busy / d_total
        return self.idle_w + (self.load_w - self.idle_w) * min(max(util, 0.0), 1.0)

    def sample(self) -> None:
        """Advance the cumulative count to now (called by the thread, or by hand in tests)."""
        with self._lock:
            now = time.monotonic()
            dt = now - self._last_t
            if self.counter is not None:
                raw = self.counter.read()
                self._uj += self.counter.delta_uj(self._raw, raw)
                self._raw = raw
                self._last_w = None
            else:
                watts = self.power.watts() if self.power else (
                    self._estimated_watts() if self.meter == "estimated" else None)
                if watts is not None:
                    prev = self._last_w if self._last_w is not None else watts
                    self._uj += (prev + watts) / 2 * dt * 1e6
                self._last_w = watts
            self._last_t = now

    def joules(self) -> float:
        """Cumulative joules since the tracker started, up to now."""
        self.sample()
        return self._uj / 1e6

    def watts(self) -> float | None:
        """The last power sample (power meters and estimates), None for counters."""
        return self._last_w

    def pace(self) -> tuple[float, float]:
        """Seconds between readings (while a generation runs, while idle)."""
        meter = self.counter or self.power
        if meter is not None:
            return meter.busy_s, meter.idle_s
        return ESTIMATE_BUSY_S, ESTIMATE_IDLE_S

    def interval(self) -> float:
        busy_s, idle_s = self.pace()
        return busy_s if self._busy else idle_s

    @contextlib.contextmanager
    def busy(self) -> Iterator[None]:
        """A generation runs: read at the busy pace until it ends."""
        with self._busy_lock:
            self._busy += 1
        self._wake.set()
        try:
            yield
        finally:
            with self._busy_lock:
                self._busy -= 1

    def start(self) -> None:
        if self.meter == "none" or self._thread is not None:
            return
        self._thread = threading.Thread(target=self._run, name="energy-sampler", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            woken = self._wake.wait(self.interval())
            self._wake.clear()
            if self._stop.is_set():
                return
            if not woken:  # woken by a generation's start, which has just read the meter
                self.sample()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=2)
