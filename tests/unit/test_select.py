"""Table tests: real profiles x real catalog entries -> the expected choice, with reasons."""

from __future__ import annotations

import pytest

from controller.adapters.data_files import load_model, load_profile
from controller.core.select import Request, choose


@pytest.mark.parametrize(
    ("profile", "ctx", "expected"),
    [
        ("rpi4-2gb", 4096, None),  # 2 GB: phi3-mini does not fit at all
        ("rpi5-4gb", 4096, "q2_k"),  # 4 GB: the 1.5 GiB KV cache leaves room for Q2_K only
        ("rpi5-4gb", 2048, "q4"),  # half the context halves the KV cache: Q4 fits
        ("rpi5-8gb", 4096, "q8_0"),  # F16 (7.64 GB) + KV does not fit 7.25 GiB usable
        ("jetson-orin-nano-8gb", 4096, "q8_0"),  # 7.6 GiB, 1 GiB reserve: F16 does not fit
        ("jetson-agx-orin-64gb", 4096, "f16"),
    ],
)
def test_phi3_mini_choice(profile: str, ctx: int, expected: str | None) -> None:
    choice = choose(load_model("phi3-mini"), load_profile(profile), Request(ctx=ctx), "dev")
    got = choice.chosen.variant.name if choice.chosen else None
    assert got == expected, choice.reason


def test_nothing_fits_is_explained_with_numbers() -> None:
    choice = choose(load_model("phi3-mini"), load_profile("rpi4-2gb"), Request(ctx=4096))
    assert choice.chosen is None
    assert "nothing fits" in choice.reason
    assert "q2_k" in choice.reason and "MiB" in choice.reason and "short by" in choice.reason
    assert all(not c.fits and "needs" in c.reason for c in choice.candidates)


def test_every_loser_has_a_reason() -> None:
    choice = choose(load_model("phi3-mini"), load_profile("rpi5-4gb"), Request(ctx=2048))
    assert choice.chosen is not None
    losers = [c for c in choice.candidates if c is not choice.chosen]
    assert losers
    for c in losers:
        assert c.reason.startswith(("needs", "fits, but lower quality")), c.reason


def test_min_tokens_per_s_filters() -> None:
    model = load_model("phi3-mini")
    profile = load_profile("rpi5-8gb")
    loose = choose(model, profile, Request(ctx=2048))
    strict = choose(model, profile, Request(ctx=2048, min_tokens_per_s=3.0))
    assert loose.chosen and strict.chosen
    assert strict.chosen.tokens_per_s >= 3.0
    assert strict.chosen.variant.size_bytes < loose.chosen.variant.size_bytes
