"""Hardware probe parsers against real-format captures in tests/data (see its README)."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent import probe_devices
from agent.probe import parse_cpuinfo, parse_device_tree_model, parse_meminfo, probe_host

DATA = Path(__file__).resolve().parents[1] / "data"


@pytest.mark.parametrize(
    ("capture", "cores", "clusters", "has", "lacks"),
    [
        ("rpi4-model-b.txt", 4, ("4x Cortex-A72",), {"asimd"}, {"asimddp", "i8mm"}),
        ("rpi5-model-b.txt", 4, ("4x Cortex-A76",), {"asimd", "asimddp", "fphp"}, {"i8mm"}),
        ("jetson-orin-nano.txt", 6, ("6x Cortex-A78AE",), {"asimddp"}, {"sve", "i8mm"}),
        ("rk3588.txt", 8, ("4x Cortex-A55", "4x Cortex-A76"), {"asimddp"}, set()),
        ("x86-amd-epyc-2vcpu.txt", 2, (), {"avx2", "fma", "f16c"}, {"asimd"}),
    ],
)
def test_cpuinfo(capture: str, cores: int, clusters: tuple[str, ...], has: set[str],
                 lacks: set[str]) -> None:
    info = parse_cpuinfo((DATA / "cpuinfo" / capture).read_text())
    assert info.cores == cores
    assert info.clusters == clusters
    assert has <= set(info.flags)
    assert not lacks & set(info.flags)
    assert info.model  # "AMD EPYC", or the ARM clusters spelled out


def test_meminfo_is_in_bytes() -> None:
    mem = parse_meminfo((DATA / "probe" / "meminfo-x86.txt").read_text())
    assert mem["MemTotal"] > 1024**3 and mem["MemTotal"] % 1024 == 0
    assert mem["MemAvailable"] <= mem["MemTotal"]
    assert "SwapTotal" in mem


@pytest.mark.parametrize(
    ("capture", "expected"),
    [
        ("devicetree-model-rpi5.bin", "Raspberry Pi 5 Model B Rev 1.0"),
        ("devicetree-model-rpi4.bin", "Raspberry Pi 4 Model B Rev 1.1"),
        ("devicetree-model-jetson-orin-nano-super.bin",
         "NVIDIA Jetson Orin Nano Engineering Reference Developer Kit Super"),
    ],
)
def test_device_tree_model_tells_boards_apart(capture: str, expected: str) -> None:
    assert parse_device_tree_model((DATA / "probe" / capture).read_bytes()) == expected


def test_jetson_release_power_mode_and_nvidia_smi() -> None:
    probe = DATA / "probe"
    assert probe_devices.parse_nv_tegra_release(
        (probe / "nv_tegra_release-r36.txt").read_text()) == "R36.4.3"
    assert probe_devices.parse_nvpmodel((probe / "nvpmodel-q.txt").read_text()) == "MAXN_SUPER"
    assert probe_devices.parse_nvidia_smi((probe / "nvidia-smi-query.csv").read_text()) == [
        ("NVIDIA GeForce RTX 4090", 24564 * 1024 * 1024)]


def test_npu_detection_from_a_device_tree(tmp_path: Path) -> None:
    assert probe_devices.npu(tmp_path) == ""
    (tmp_path / "sys/module/rknpu").mkdir(parents=True)
    (tmp_path / "dev").mkdir()
    (tmp_path / "dev/fastrpc-cdsp").write_text("")
    assert probe_devices.npu(tmp_path) == "Qualcomm Hexagon (fastrpc), Rockchip RKNPU"


def test_jetson_facts_from_a_root(tmp_path: Path) -> None:
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc/nv_tegra_release").write_text(
        (DATA / "probe" / "nv_tegra_release-r36.txt").read_text())
    facts = probe_devices.jetson(tmp_path)
    assert facts.l4t_release == "R36.4.3" and "Orin" in facts.gpu


def test_probe_of_this_machine() -> None:
    host = probe_host()
    assert host.ram_total_bytes > 0 and host.cpu.cores >= 1 and host.arch
    assert any(r.startswith("llama.cpp") for r in host.runtimes)
    assert "CPUExecutionProvider" in host.execution_providers


def test_apple_sysctl() -> None:
    facts = probe_devices.parse_sysctl((DATA / "probe" / "sysctl-m4-mac-mini.txt").read_text())
    assert facts.chip == "Apple M4" and facts.ram_bytes == 16 * 1024**3 and facts.cores == 10
    assert facts.clusters == ("4x performance", "6x efficiency")
    assert "Metal" in facts.gpu
