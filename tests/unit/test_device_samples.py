"""Device samples the agent keeps by itself, and throttling read where each platform says it
(sysfs trees laid out as the kernel and the Raspberry Pi firmware driver do)."""

from __future__ import annotations

from pathlib import Path

from agent.energy import EnergyTracker
from agent.telemetry import AgentCounters, DeviceMonitor
from agent.throttling import ThrottleProbe, parse_get_throttled


def _write(root: Path, rel: str, text: str) -> None:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def _stat(root: Path, busy: int, idle: int) -> None:
    _write(root, "proc/stat", f"cpu  {busy} 0 0 {idle} 0 0 0 0 0 0\n")


def test_pi_get_throttled_bits_now_not_since_boot() -> None:
    assert parse_get_throttled("throttled=0x50005") == ["pi:under-voltage", "pi:throttled"]
    assert parse_get_throttled("50000") == []  # only "has occurred" bits
    assert parse_get_throttled("0x8") == ["pi:soft-temperature-limit"]
    assert parse_get_throttled("garbage") == []


def test_throttling_from_firmware_node_trip_points_cooling_and_cpufreq(tmp_path: Path) -> None:
    root = tmp_path
    probe = ThrottleProbe(root)
    assert not probe.read().throttled  # nothing on this tree yet
    _write(root, "sys/devices/platform/soc/soc:firmware/get_throttled", "4\n")
    zone = "sys/class/thermal/thermal_zone0/"
    _write(root, zone + "type", "cpu-thermal\n")
    _write(root, zone + "temp", "86150\n")
    _write(root, zone + "trip_point_0_type", "passive\n")
    _write(root, zone + "trip_point_0_temp", "85000\n")
    _write(root, zone + "trip_point_1_type", "critical\n")
    _write(root, zone + "trip_point_1_temp", "110000\n")
    _write(root, "sys/class/thermal/cooling_device0/type", "cpufreq-cpu0\n")
    _write(root, "sys/class/thermal/cooling_device0/cur_state", "2\n")
    _write(root, "sys/class/thermal/cooling_device0/max_state", "4\n")
    policy = "sys/devices/system/cpu/cpufreq/policy0/"
    _write(root, policy + "scaling_cur_freq", "1500000\n")
    _write(root, policy + "cpuinfo_max_freq", "2400000\n")
    _write(root, policy + "scaling_max_freq", "1500000\n")
    state = ThrottleProbe(root).read()
    assert state.throttled
    assert state.reasons == ["pi:throttled", "thermal:cpu-thermal 86.2>=85.0 C passive",
                             "cooling:cpufreq-cpu0 state 2/4",
                             "cpufreq:policy0 capped 1500/2400 MHz"]
    assert (state.cpu_freq_mhz, state.cpu_max_freq_mhz) == (1500.0, 2400.0)


def test_a_pi_without_the_firmware_node_asks_vcgencmd(tmp_path: Path) -> None:
    _write(tmp_path, "proc/device-tree/model", "Raspberry Pi 4 Model B Rev 1.4\0")
    asked = []

    def vcgencmd() -> str:
        asked.append(1)
        return "throttled=0x1\n"

    state = ThrottleProbe(tmp_path, vcgencmd=vcgencmd).read()
    assert asked and state.reasons == ["pi:under-voltage"]
    # not a Pi: never asked
    other = tmp_path / "x86"
    other.mkdir()
    assert ThrottleProbe(other, vcgencmd=vcgencmd).read().reasons == [] and len(asked) == 1


def test_monitor_keeps_samples_with_their_own_sequence_across_a_restart(tmp_path: Path) -> None:
    root = tmp_path / "root"
    _stat(root, 100, 900)
    _write(root, "proc/meminfo", "MemTotal: 2048000 kB\nMemAvailable: 1024000 kB\n")
    _write(root, "sys/class/thermal/thermal_zone0/type", "cpu-thermal\n")
    _write(root, "sys/class/thermal/thermal_zone0/temp", "55000\n")
    energy = EnergyTracker(root=root, idle_w=2.0, load_w=6.0)
    counters = AgentCounters(worker_crashes=1, requests_total=5, active_sha256="ab" * 32)
    data = tmp_path / "data"
    data.mkdir()
    monitor = DeviceMonitor(data, energy, lambda: counters, root=root, every_s=0)
    _stat(root, 600, 1400)  # 50 % busy since the last read
    first = monitor.take()
    second = monitor.take()
    assert (first.seq, second.seq) == (1, 2)
    assert first.cpu_percent == 50.0 and first.temperatures_c == {"cpu-thermal": 55.0}
    assert first.ram_used_bytes == 1024000 * 1024 and first.energy_meter == "estimated"
    assert first.energy_j >= 0 and not first.energy_measured
    assert first.worker_crashes == 1 and first.active_sha256 == "ab" * 32
    again = DeviceMonitor(data, energy, lambda: counters, root=root, every_s=0)
    assert again.log.epoch == monitor.log.epoch
    assert again.take().seq == 3
    assert [s.seq for s in again.log.after(1, 10)] == [2, 3]
