"""Every number in a real device profile is sourced or says how it was derived."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

PROFILES = sorted((Path(__file__).resolve().parent.parent.parent / "profiles").glob("*.toml"))
NUMBER = re.compile(r"\s*(\w+)\s*=\s*([\d.]+)\s*(#.*)?$")


def _real(path: Path) -> bool:
    return bool(tomllib.loads(path.read_text()).get("kind", "device") == "device")


@pytest.mark.parametrize("path", [p for p in PROFILES if _real(p)], ids=lambda p: p.stem)
def test_every_number_is_sourced_or_derived(path: Path) -> None:
    text = path.read_text()
    sources = " ".join(tomllib.loads(text)["sources"])
    bare = []
    for line in text.splitlines():
        m = NUMBER.match(line)
        if not m or m.group(3):
            continue  # not a number, or it says where it comes from inline
        value = m.group(2)
        digits = value.rstrip("0").rstrip(".") if "." in value else value
        if not re.search(rf"(?<![\d.]){re.escape(digits)}(?![\d])", sources):
            bare.append(line.strip())
    assert not bare, f"{path.name}: numbers with no source or derivation: {bare}"


@pytest.mark.parametrize("path", [p for p in PROFILES if p.stem.startswith(("rpi4", "rpi5"))],
                         ids=lambda p: p.stem)
def test_raspberry_pi_power_is_published(path: Path) -> None:
    power = tomllib.loads(path.read_text())["power"]
    assert power["idle_w"] > 0 and power["load_w"] > 0
    assert "not sourced" not in path.read_text()
