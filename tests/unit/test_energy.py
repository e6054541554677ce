"""Energy meters on sysfs trees laid out per the kernel ABI (shared/facts.md §5)."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from agent import energy_meters as m
from agent.energy import EnergyTracker, parse_proc_stat


def _w(root: Path, rel: str, value: object) -> None:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"{value}\n")


RAPL_MAX = 262_143_328_850  # Intel client CPUs: 2^32 x 61.04 µJ (facts §5.1)


def test_rapl_sums_top_level_zones_and_handles_wraparound(tmp_path: Path) -> None:
    _w(tmp_path, "sys/class/powercap/intel-rapl:0/energy_uj", RAPL_MAX - 1_000_000)
    _w(tmp_path, "sys/class/powercap/intel-rapl:0/max_energy_range_uj", RAPL_MAX)
    _w(tmp_path, "sys/class/powercap/intel-rapl:0:0/energy_uj", 5)  # core sub-zone: ignored
    _w(tmp_path, "sys/class/powercap/intel-rapl:1/energy_uj", 10_000_000)
    _w(tmp_path, "sys/class/powercap/intel-rapl:1/max_energy_range_uj", RAPL_MAX)
    meter = m.RaplMeter.find(tmp_path)
    assert meter is not None and len(meter.zones) == 2
    before = meter.read()
    _w(tmp_path, "sys/class/powercap/intel-rapl:0/energy_uj", 2_000_000)  # wrapped
    _w(tmp_path, "sys/class/powercap/intel-rapl:1/energy_uj", 13_000_000)
    assert meter.delta_uj(before, meter.read()) == 3_000_000 + 3_000_000
    assert before[0] > 2**32  # parsed as 64-bit


def test_unreadable_rapl_is_skipped(tmp_path: Path) -> None:
    (tmp_path / "sys/class/powercap/intel-rapl:0").mkdir(parents=True)  # no energy_uj
    assert m.RaplMeter.find(tmp_path) is None


def test_hwmon_energy_counts_sockets_not_cores(tmp_path: Path) -> None:
    _w(tmp_path, "sys/class/hwmon/hwmon2/energy1_input", 100)
    _w(tmp_path, "sys/class/hwmon/hwmon2/energy1_label", "Esocket0")
    _w(tmp_path, "sys/class/hwmon/hwmon2/energy2_input", 50)
    _w(tmp_path, "sys/class/hwmon/hwmon2/energy2_label", "Ecore000")
    meter = m.HwmonEnergyMeter.find(tmp_path)
    assert meter is not None and len(meter.files) == 1


def _jp5(root: Path) -> None:
    hw = "sys/bus/i2c/drivers/ina3221/1-0040/hwmon/hwmon3"
    for n, (label, mv, ma) in enumerate(
            [("VDD_IN", 5000, 1200), ("VDD_CPU_GPU_CV", 5000, 400), ("VDD_SOC", 5000, 300)],
            start=1):
        _w(root, f"{hw}/in{n}_label", label)
        _w(root, f"{hw}/in{n}_input", mv)
        _w(root, f"{hw}/curr{n}_input", ma)
    _w(root, f"{hw}/in7_label", "sum of shunt voltages")


def test_jetson_jp5_uses_vdd_in_as_the_total(tmp_path: Path) -> None:
    _jp5(tmp_path)
    meter = m.ina3221_jp5(tmp_path)
    assert meter is not None and meter.name == "ina3221:VDD_IN"
    assert meter.watts() == pytest.approx(6.0)  # 5000 mV x 1200 mA


def test_jetson_jp4_iio_layout(tmp_path: Path) -> None:
    dev = "sys/bus/i2c/drivers/ina3221x/0-0040/iio:device0"
    _w(tmp_path, f"{dev}/rail_name_0", "POM_5V_IN")
    _w(tmp_path, f"{dev}/in_power0_input", 4200)
    _w(tmp_path, f"{dev}/rail_name_1", "POM_5V_GPU")
    _w(tmp_path, f"{dev}/in_power1_input", 800)
    meter = m.ina3221_jp4(tmp_path)
    assert meter is not None and meter.name == "ina3221:POM_5V_IN"
    assert meter.watts() == pytest.approx(4.2)


PMIC = """\
 3V7_WL_SW_A current(0)=0.12199130A
 VDD_CORE_A current(7)=1.54489000A
 HDMI_A current(22)=0.01709400A
 3V7_WL_SW_V volt(8)=3.60605200V
 VDD_CORE_V volt(15)=0.88725180V
 HDMI_V volt(23)=5.09520000V
 EXT5V_V volt(24)=4.87894000V
 BATT_V volt(25)=2.50512600V
"""


def test_pi5_pmic_sums_amps_times_volts(tmp_path: Path) -> None:
    expected = 0.12199130 * 3.60605200 + 1.54489000 * 0.88725180 + 0.01709400 * 5.09520000
    assert m.parse_pmic_read_adc(PMIC) == pytest.approx(expected)
    meter = m.pmic(tmp_path, run=lambda: PMIC)
    assert meter is not None and meter.watts() == pytest.approx(expected)


def test_battery_power_supply_units(tmp_path: Path) -> None:
    _w(tmp_path, "sys/class/power_supply/AC/type", "Mains")
    _w(tmp_path, "sys/class/power_supply/BAT0/type", "Battery")
    _w(tmp_path, "sys/class/power_supply/BAT0/voltage_now", 3_850_000)  # µV
    _w(tmp_path, "sys/class/power_supply/BAT0/current_now", -1_200_000)  # µA, discharging
    meter = m.battery(tmp_path)
    assert meter is not None and meter.name == "battery:BAT0"
    assert meter.watts() == pytest.approx(3.85 * 1.2)


def test_tracker_integrates_a_power_meter(tmp_path: Path) -> None:
    _jp5(tmp_path)
    tracker = EnergyTracker(tmp_path)
    assert tracker.meter == "ina3221:VDD_IN" and tracker.measured
    tracker.sample()
    start = tracker.joules()
    import time

    time.sleep(0.2)
    spent = tracker.joules() - start
    assert 6.0 * 0.15 < spent < 6.0 * 2.0  # 6 W for ~0.2 s (a loaded machine sleeps longer)


def test_tracker_falls_back_to_a_labelled_estimate(tmp_path: Path) -> None:
    _w(tmp_path, "proc/stat", "cpu  100 0 100 800 0 0 0 0 0 0\n")
    tracker = EnergyTracker(tmp_path, idle_w=2.0, load_w=10.0)
    assert tracker.meter == "estimated" and not tracker.measured
    _w(tmp_path, "proc/stat", "cpu  150 0 150 900 0 0 0 0 0 0\n")  # 50 % busy
    tracker.sample()
    assert tracker.watts() == pytest.approx(6.0)
    assert EnergyTracker(tmp_path).meter == "none"


def test_proc_stat() -> None:
    assert parse_proc_stat("cpu  1 2 3 4 5 6 7 8 0 0\ncpu0 1 1 1 1\n") == (1 + 2 + 3 + 6 + 7 + 8,
                                                                           36)


def test_each_meter_is_read_at_its_own_pace(tmp_path: Path) -> None:
    """(busy, idle) seconds between readings: shared/facts.md 5.7."""
    pmic = m.pmic(tmp_path, run=lambda: PMIC)
    assert pmic is not None and (pmic.busy_s, pmic.idle_s) == (0.5, 10.0)
    _w(tmp_path, "sys/class/power_supply/BAT0/type", "Battery")
    _w(tmp_path, "sys/class/power_supply/BAT0/power_now", 4_000_000)
    battery = m.battery(tmp_path)
    assert battery is not None and (battery.busy_s, battery.idle_s) == (1.0, 10.0)
    _jp5(tmp_path)
    assert EnergyTracker(tmp_path).pace() == (0.1, 2.0)
    rapl = tmp_path / "rapl"
    _w(rapl, "sys/class/powercap/intel-rapl:0/energy_uj", 5)
    assert EnergyTracker(rapl).pace() == (1.0, 1.0)
    _w(tmp_path / "est", "proc/stat", "cpu  100 0 100 800 0 0 0 0 0 0\n")
    assert EnergyTracker(tmp_path / "est", idle_w=2.0, load_w=10.0).pace() == (0.1, 2.0)


def _counting_pmic(tmp_path: Path) -> tuple[EnergyTracker, list[int]]:
    """A tracker on a Pi 5 PMIC whose every reading is counted."""
    reads: list[int] = []

    def pmic_read() -> str:
        reads.append(1)
        return PMIC

    return EnergyTracker(tmp_path, pmic_run=pmic_read), reads


def test_a_generation_switches_the_sampler_to_its_busy_pace(tmp_path: Path) -> None:
    tracker, reads = _counting_pmic(tmp_path)
    assert tracker.meter == "pi5-pmic"
    assert tracker.interval() == 10.0
    tracker.start()
    try:
        before = len(reads)
        with tracker.busy():
            assert tracker.interval() == 0.5
            # the sampler wakes at once and reads every 0.5 s (bounded wait, no timing asserted)
            for _ in range(200):
                if len(reads) >= before + 2:
                    break
                threading.Event().wait(0.05)
            assert len(reads) >= before + 2
            with tracker.busy():  # two generations at once
                pass
            assert tracker.interval() == 0.5
        assert tracker.interval() == 10.0
    finally:
        tracker.stop()
    assert tracker._thread is not None and not tracker._thread.is_alive()  # woken to stop


def test_an_idle_sampler_reads_at_its_idle_pace(tmp_path: Path) -> None:
    tracker, reads = _counting_pmic(tmp_path)
    tracker.start()
    before = len(reads)
    threading.Event().wait(0.6)  # over one busy interval: an idle sampler reads nothing
    assert tracker._thread is not None and tracker._thread.is_alive()  # it runs, waiting
    tracker.stop()
    assert len(reads) == before
