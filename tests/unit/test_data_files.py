"""Shipped profiles and catalog load; malformed ones are refused naming file and field."""

from __future__ import annotations

from pathlib import Path

import pytest

from controller.adapters.data_files import load_catalog, load_profiles
from controller.errors import InvalidData

REAL_CLASSES = {
    "rpi4-2gb", "rpi4-4gb", "rpi4-8gb", "rpi5-4gb", "rpi5-8gb", "rpi5-16gb",
    "jetson-orin-nano-8gb", "jetson-orin-nano-8gb-super", "jetson-orin-nx-16gb",
    "jetson-agx-orin-64gb", "android-snapdragon-8-gen-3", "rk3588-16gb", "intel-n100-16gb",
    "apple-m4-mac-mini-16gb",
}


def test_shipped_profiles_load_and_cite_sources() -> None:
    profiles = load_profiles()
    assert set(profiles) >= REAL_CLASSES
    for name in REAL_CLASSES:
        assert profiles[name].kind == "device"
        assert profiles[name].sources, name


def test_lab_scale_models_are_marked_as_such() -> None:
    labs = [p for p in load_profiles().values() if p.name.startswith("lab-")]
    assert len(labs) >= 4
    for p in labs:
        assert p.kind == "lab-scale-model"
        assert p.scale_of in REAL_CLASSES


def test_catalog_loads() -> None:
    catalog = load_catalog()
    assert {"tiny-llama", "phi3-mini"} <= set(catalog)
    phi3 = catalog["phi3-mini"]
    assert phi3.variant("q4") and phi3.variant("q4").size_bytes == 2_390_000_000  # type: ignore[union-attr]
    assert all(v.source.startswith("hf://") for v in phi3.variants)


def _write_profile(d: Path, name: str, body: str) -> Path:
    path = d / f"{name}.toml"
    path.write_text(body)
    return path


def test_malformed_profile_names_file_and_field(tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLEET_PROFILES_DIR", str(tmp_path))
    path = _write_profile(tmp_path, "bad", """
name = "bad"
title = "Bad"
sources = ["me"]
[cpu]
arch = "aarch64"
cores = 4
[memory]
ram_mib = "lots"
reserve_mib = 100
bandwidth_gbps = 10
""")
    with pytest.raises(InvalidData) as info:
        load_profiles()
    assert str(path) in info.value.message
    assert "memory.ram_mib" in info.value.message
    assert "whole number" in info.value.message


def test_user_profile_overrides_shipped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLEET_PROFILES_DIR", str(tmp_path))
    _write_profile(tmp_path, "rpi5-8gb", """
name = "rpi5-8gb"
title = "My Pi 5 with a bigger reserve"
sources = ["measured at our site"]
[cpu]
arch = "aarch64"
cores = 4
[memory]
ram_mib = 8192
reserve_mib = 4096
bandwidth_gbps = 17.07
""")
    assert load_profiles()["rpi5-8gb"].reserve_bytes == 4096 * 1024 * 1024


def test_probed_numbers_override_the_declared_profile() -> None:
    from controller.core.profiles import overlay_probe

    base = load_profiles()["rpi5-8gb"]
    merged = overlay_probe(base, "kiosk-1", arch="aarch64", cores=3, isa=("asimd", "asimddp"),
                           ram_bytes=7_900_000_000, disk_free_bytes=12_000_000_000,
                           bandwidth_gbps=6.1, title="Raspberry Pi 5 Model B Rev 1.0",
                           runtimes=("llama.cpp",), decode_efficiency=0.42)
    assert (merged.ram_bytes, merged.cores, merged.disk_bytes) == (7_900_000_000, 3,
                                                                  12_000_000_000)
    assert merged.reserve_bytes == base.reserve_bytes and merged.load_w == base.load_w
    assert merged.bandwidth_measured_gbps == 6.1 and merged.bandwidth_gbps == 17.07
    assert merged.decode_efficiency == 0.42 and merged.runtimes == ("llama.cpp",)
    unknown = overlay_probe(None, "x", arch="x86_64", cores=2, isa=(), ram_bytes=8 * 2**30,
                            disk_free_bytes=0, bandwidth_gbps=10.0, title="")
    assert unknown.reserve_bytes == int(8 * 2**30 * 0.15)  # no profile: 15 % reserve
