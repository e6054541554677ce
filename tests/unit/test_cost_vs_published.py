"""The cost model against published measurements (tests/data/published/measurements.csv).

Every held-out row is predicted with the shipped constants (fitted on the other rows only,
tests/unit/test_cost_fit.py). The targets of issue 16 are asserted on the held-out rows; rows
that miss +-35 % are listed by name with why, so a new miss fails and a fixed one asks for
the list to shrink.
"""

from __future__ import annotations

import statistics
from pathlib import Path

import pytest

from controller.adapters.data_files import load_model
from controller.adapters.published import load_rows
from controller.core import cost, fitting
from controller.core.fitting import PublishedRow

DATA = Path(__file__).resolve().parent.parent / "data" / "published"

# Held-out decode rows outside +-35 %, and why the model misses them. Every mechanism checked
# for them, with its source and what it would change, is in docs/selection.md ("Known misses:
# what was checked"); none is both documented by the source and applicable, so the model was
# not tuned on them.
KNOWN_MISSES = {
    # Ollama 0.1.41 (June 2024) on a Pi 5 4 GB: the same run's phi3 row is +24 %. Quantization
    # (Q4_0, Q6_K head), head kernel cost and a no-dot-product Ollama build were checked and
    # change nothing; firmware (+8 %), the unpublished answer length (197 kB of KV a position)
    # and unknown cooling each could, but the source records none of them.
    "pi5-4-qwen15-1.8b-ollama",
    # MLC q4f16_1 Gemma-2-9B in MAXN SUPER: 1.28x the 15 W row where bandwidth and GPU clock
    # give 1.5-1.63x. Transcription, format, the quantized tied head (as Llama-3.2-3B's, which
    # is on target) and Gemma-2's extra kernels were checked; the 5.2 GB model plus KV on an
    # 8 GB board is memory-constrained, which no source quantifies.
    "nanosuper-mlc-gemma2-9b",
}


@pytest.fixture(scope="module")
def rows() -> list[PublishedRow]:
    return load_rows(DATA / "measurements.csv", DATA / "models")


def test_the_validation_set_is_large_sourced_and_varied(rows: list[PublishedRow]) -> None:
    assert len(rows) >= 40
    assert all(r.source.startswith("https://") for r in rows)
    held = [r for r in rows if r.split == "holdout"]
    assert {r.metric for r in held} == {"decode", "prefill"}
    assert len({r.device_class for r in held}) >= 7
    assert any(r.is_moe for r in held) and any(r.device_class == "pi4" for r in held)


def test_held_out_targets(rows: list[PublishedRow]) -> None:
    held = [r for r in rows if r.split == "holdout"]
    for r in held:
        print(f"{r.id:40} measured {r.measured:8.2f} predicted {fitting.predict(r):8.2f} "
              f"error {fitting.error(r):+.0%}")
    decode = [fitting.error(r) for r in held if r.metric == "decode"]
    prefill = [fitting.error(r) for r in held if r.metric == "prefill"]
    assert statistics.median(abs(e) for e in decode) <= 0.12
    assert statistics.median(abs(e) for e in prefill) <= 0.25
    outside = {r.id for r in held if r.metric == "decode" and abs(fitting.error(r)) > 0.35}
    assert outside == KNOWN_MISSES


def test_moe_and_compute_bound_rows_are_held_out_and_within_bounds(
        rows: list[PublishedRow]) -> None:
    moe = [r for r in rows if r.split == "holdout" and r.is_moe and r.metric == "decode"]
    pi4 = [r for r in rows if r.split == "holdout" and r.device_class == "pi4"
           and r.metric == "decode" and r.id not in KNOWN_MISSES]
    assert moe and pi4
    assert all(abs(fitting.error(r)) <= 0.35 for r in moe + pi4)


def test_kv_cache_matches_the_worked_numbers() -> None:
    # facts.md §2.5: KV bytes per token, f16
    assert cost.kv_cache_bytes(load_model("phi3-mini").arch, 1) == 393_216
    assert cost.kv_cache_bytes(load_model("llama-3.2-3b").arch, 1) == 114_688
    assert cost.kv_cache_bytes(load_model("llama-3.2-1b").arch, 1) == 32_768
    assert cost.kv_cache_bytes(load_model("gemma-2b").arch, 1) == 18_432
    assert cost.kv_cache_bytes(load_model("qwen2.5-0.5b").arch, 1) == 12_288
    # OpenELM: summed per layer (63 KV heads over 16 layers, apple/OpenELM-270M config.json
    # num_kv_heads, x 64 dims x 2 x 2 B)
    assert cost.kv_cache_bytes(load_model("openelm-270m").arch, 1) == 63 * 64 * 2 * 2


def test_moe_streams_shared_weights_and_the_routed_experts_only() -> None:
    spec = load_model("mixtral-8x7b")
    v = spec.variant("q4_k_m")
    assert v is not None
    per_token = cost.bytes_read_per_token(spec.arch, v, n_past=0)
    # 12.9B of 46.7B parameters are active; the untied input embedding (0.13B) is not read
    assert 0.25 * v.size_bytes < per_token < 12.9 / 46.7 * v.size_bytes
    dense = cost.bytes_read_per_token(
        spec.arch.__class__(**{**spec.arch.__dict__, "n_expert": 0, "n_expert_used": 0,
                               "active_params": 0}), v, n_past=0)
    assert dense > 3 * per_token
