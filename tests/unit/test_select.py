"""Table tests: real profiles x real catalog entries -> the expected choice, with reasons."""

from __future__ import annotations

import pytest

from controller.adapters.data_files import load_model, load_profile
from controller.core.models import ModelSpec
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


REAL = ["rpi4-2gb", "rpi4-4gb", "rpi4-8gb", "rpi5-4gb", "rpi5-8gb", "rpi5-16gb",
        "jetson-orin-nano-8gb", "jetson-orin-nano-8gb-super", "jetson-orin-nx-16gb",
        "jetson-agx-orin-64gb", "android-snapdragon-8-gen-3", "rk3588-16gb",
        "intel-n100-16gb", "apple-m4-mac-mini-16gb"]


def test_mixtral_fits_only_the_64gb_agx_orin() -> None:
    model = load_model("mixtral-8x7b")
    fits = {p for p in REAL if choose(model, load_profile(p), Request(ctx=4096)).chosen}
    assert fits == {"jetson-agx-orin-64gb"}


@pytest.mark.parametrize(
    ("model", "profile", "expected"),
    [
        ("qwen2.5-0.5b", "rpi4-2gb", "f16"),
        ("llama-3.2-1b", "rpi4-2gb", "q4_k_m"),
        ("llama-3.2-3b", "rpi4-2gb", None),
        ("llama-3.2-3b", "rpi5-4gb", "q4_k_m"),
        ("llama-3.2-3b", "rpi5-8gb", "f16"),
        ("gemma-2b", "rpi5-4gb", "q4_k_m"),
        ("openelm-270m", "rpi4-2gb", None),  # ctx 4096 > its 2048: refused with the reason
    ],
)
def test_small_models_across_devices(model: str, profile: str, expected: str | None) -> None:
    choice = choose(load_model(model), load_profile(profile), Request(ctx=4096))
    assert (choice.chosen.variant.name if choice.chosen else None) == expected, choice.reason


def test_prefer_speed_and_energy_pick_the_fastest_that_fits() -> None:
    model, profile = load_model("llama-3.2-3b"), load_profile("rpi5-8gb")
    quality = choose(model, profile, Request(ctx=4096))
    speed = choose(model, profile, Request(ctx=4096, prefer="speed"))
    energy = choose(model, profile, Request(ctx=4096, prefer="energy"))
    assert quality.chosen and speed.chosen and energy.chosen
    assert speed.chosen.variant.name == "q4_k_m" and energy.chosen.variant.name == "q4_k_m"
    assert quality.chosen.variant.name == "f16"
    loser = next(c for c in energy.candidates if c.variant.name == "q8_0")
    assert "J/token" in loser.reason


def test_max_ttft_and_runtime_filters() -> None:
    model, profile = load_model("llama-3.2-3b"), load_profile("rpi5-8gb")
    strict = choose(model, profile, Request(ctx=4096, max_ttft_ms=100, prompt_tokens=512))
    assert strict.chosen is None and "TTFT" in strict.reason or all(
        "TTFT" in c.reason for c in strict.candidates)
    from dataclasses import replace

    onnx_only = replace(profile, runtimes=("onnxruntime 1.20",))
    none = choose(model, onnx_only, Request(ctx=4096))
    assert none.chosen is None
    assert all("needs llama.cpp" in c.reason for c in none.candidates)


def _tiny_with_hashes() -> ModelSpec:
    from dataclasses import replace

    model = load_model("tiny-llama")
    return replace(model, variants=tuple(replace(v, sha256=f"{i:064x}")
                                         for i, v in enumerate(model.variants)))


def test_a_held_variant_needs_no_disk() -> None:
    model = _tiny_with_hashes()
    q8 = model.variant("q8_0")
    assert q8 is not None
    profile = load_profile("lab-orin-nano-8gb")
    free = 82 * 2**20  # too little for q8_0 (39 MiB + 64 MiB margin), enough for q2_k
    moved = choose(model, profile, Request(ctx=512, disk_free_bytes=free))
    assert moved.chosen is not None and moved.chosen.variant.name == "q2_k"
    kept = choose(model, profile, Request(ctx=512, disk_free_bytes=free,
                                          blobs_held=frozenset({q8.sha256})))
    assert kept.chosen is not None and kept.chosen.variant.name == "q8_0", kept.reason


def test_zero_free_disk_is_full_not_unknown() -> None:
    model = _tiny_with_hashes()
    profile = load_profile("lab-n100-16gb")
    full = choose(model, profile, Request(ctx=512, disk_free_bytes=0))
    assert full.chosen is None
    assert all("free disk" in c.reason for c in full.candidates)
    unknown = choose(model, profile, Request(ctx=512))
    assert unknown.chosen is not None and unknown.chosen.variant.name == "f16"
