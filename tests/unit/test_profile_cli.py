"""`fleet profile show` prints values as a person reads them."""

from __future__ import annotations

import json

from tests.conftest import Cli


def test_profile_show_reads_like_prose(cli: Cli) -> None:
    result = cli("profile", "show", "rpi5-8gb")
    assert result.code == 0, result.err
    out = result.out
    assert "isa:" in out and "neon, asimd, asimddp, fphp, asimdhp" in out
    assert "('neon'" not in out and "idle_w" not in out
    assert "8.0 GiB RAM, 768 MiB reserved, 7.2 GiB usable" in out
    assert "17.07 GB/s spec, 11.65 GB/s measured" in out
    assert "idle 4.5 W, load 13.9 W" in out
    assert "2.4 GHz, 2 x 128-bit SIMD pipes" in out
    assert "sources:" in out and "geerlingguy/sbc-reviews#21" in out


def test_unknown_values_say_unknown_not_zero(cli: Cli) -> None:
    out = cli("profile", "show", "apple-m1-16gb").out
    assert "idle unknown, load unknown" in out
    assert "0.0" not in out
    gpu = next(line for line in out.splitlines() if line.startswith("gpu:"))
    assert "metal" in gpu and "2.6 TFLOPS" in gpu


def test_profile_show_json_keeps_the_raw_fields(cli: Cli) -> None:
    data = json.loads(cli("profile", "show", "rpi4-2gb", "--json").out)
    assert data["idle_w"] == 2.7 and data["isa"] == ["neon", "asimd"]
