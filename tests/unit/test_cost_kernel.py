"""Per quantization type kernel cost on the CPU compute roof.

Without int8 dot products every integer type costs the same per value; with them, Q2_K's
unpacking costs more than its dot products on Arm (single-threaded, llama.cpp decodes a Q2_K
Llama-2-7B slower than its Q4_0 with fewer bytes). The cost divides the integer rate for
Q2_K files only, on Arm CPUs with dot products only, in the fleet plan's path as in the cost
model's.
"""

from __future__ import annotations

from dataclasses import replace

import pytest

from controller.adapters.data_files import load_profiles
from controller.core import cost, speed
from controller.core.cost_constants import CONSTANTS
from controller.core.models import Architecture, ModelSpec, Variant
from controller.core.select import Request, choose

ARCH = Architecture(n_layer=32, n_embd=4096, n_head=32, n_head_kv=32, n_ctx_train=4096,
                    n_vocab=32000, params=6_740_000_000, n_ff=11008)


def _variant(quant: str, size: int) -> Variant:
    return Variant(name=quant.lower(), format="gguf", quant=quant, size_bytes=size,
                   bits_per_weight=0.0, quality_kld=0.0, quality_source="", source="x")


Q4_0 = _variant("Q4_0", 3_822_520_893)
Q2_K = _variant("Q2_K", 2_823_940_997)


def _tps(profile_name: str, variant: Variant, threads: int) -> float:
    profile = load_profiles()[profile_name]
    return cost.decode_tokens_per_s(ARCH, variant, profile, 64, threads=threads)


def test_q2_k_costs_more_per_mac_on_arm_with_dot_products() -> None:
    # one Cortex-A76 thread: both compute bound over the same MACs
    q4, q2 = _tps("rpi5-8gb", Q4_0, 1), _tps("rpi5-8gb", Q2_K, 1)
    assert q2 < q4
    assert q4 / q2 == pytest.approx(CONSTANTS.kernel_cost_q2k_arm, rel=1e-9)
    assert CONSTANTS.kernel_cost_q2k_arm > 1.0


@pytest.mark.parametrize("profile_name", ["intel-n100-16gb", "rpi4-4gb"])
def test_q2_k_costs_the_same_per_mac_elsewhere(profile_name: str) -> None:
    # x86 with AVX2, and an A72 without dot products: one integer rate for every type
    profile = load_profiles()[profile_name]
    r = speed.rates(profile, threads=1)
    assert speed.int_rate(r.int_macs, speed.KERNEL_Q2K, r) == r.int_macs
    w4, w2 = speed.work(ARCH, Q4_0), speed.work(ARCH, Q2_K)
    assert w2.macs == w4.macs and w2.kernel == speed.KERNEL_Q2K and w4.kernel == ""


def test_memory_bound_q2_k_is_still_priced_by_its_bytes() -> None:
    # enough A76 cores for the memory roof to govern both: the smaller file is faster, by
    # its bytes (the cost touches the compute roof only)
    wide = replace(load_profiles()["rpi5-8gb"], cores=32, threads=32)
    q4 = cost.decode_tokens_per_s(ARCH, Q4_0, wide, 64)
    q2 = cost.decode_tokens_per_s(ARCH, Q2_K, wide, 64)
    b4 = cost.bytes_read_per_token(ARCH, Q4_0, 64)
    b2 = cost.bytes_read_per_token(ARCH, Q2_K, 64)
    assert q2 / q4 == pytest.approx(b4 / b2, rel=1e-9)


def test_the_plan_path_applies_the_same_cost() -> None:
    profile = replace(load_profiles()["rpi5-8gb"], threads=1)
    model = ModelSpec(name="m", title="m", arch=ARCH, variants=(Q4_0, Q2_K), default_ctx=4096)
    choice = choose(model, profile, Request(ctx=128, prefer="speed"))
    by_name = {c.variant.name: c for c in choice.candidates}
    for v in (Q4_0, Q2_K):
        assert by_name[v.name].tokens_per_s == pytest.approx(
            cost.decode_tokens_per_s(ARCH, v, profile, 64), rel=1e-9)
    # the fastest is Q4_0, not the smaller Q2_K: speed is not bytes alone
    assert choice.chosen is not None and choice.chosen.variant.name == "q4_0"


def test_a_gpu_decodes_no_faster_than_its_matrix_rate() -> None:
    # a Jetson's GPU path: the memory roof governs at its real TFLOPS; a tenth of a TFLOPS
    # (a weak GPU on the same memory) makes decode compute bound
    orin = load_profiles()["jetson-orin-nano-8gb"]
    weak = replace(orin, gpu_tflops=0.1)
    real_tps = cost.decode_tokens_per_s(ARCH, Q4_0, orin, 64)
    weak_tps = cost.decode_tokens_per_s(ARCH, Q4_0, weak, 64)
    r = speed.rates(weak)
    macs = speed.work(ARCH, Q4_0).macs + speed.work(ARCH, Q4_0).attention_macs_per_position * 64
    assert weak_tps < real_tps
    assert 1.0 / weak_tps == pytest.approx(macs / r.int_macs + ARCH.n_layer * r.layer_overhead_s)


def test_a_calibrated_device_keeps_the_compute_roof() -> None:
    # a one-thread Pi 5 calibrated on Q4_0 (0.85 tok/s measured): Q2_K, with fewer bytes, is
    # still predicted slower (its compute roof), not faster by its bytes (before: +74 %)
    profile = replace(load_profiles()["rpi5-8gb"], threads=1)
    roof = cost.bandwidth_roof_tokens_per_s(ARCH, Q4_0, profile, 64)
    calibrated = replace(profile, decode_efficiency=0.85 / roof)
    uncalibrated = cost.decode_tokens_per_s(ARCH, Q4_0, profile, 64)  # compute bound, 0.80
    q4 = cost.decode_tokens_per_s(ARCH, Q4_0, calibrated, 64)
    assert q4 == pytest.approx(min(0.85, uncalibrated), rel=1e-9)
    assert cost.decode_tokens_per_s(ARCH, Q2_K, calibrated, 64) < q4
    # memory bound (four threads), the calibrated variant is predicted at its measurement
    four = replace(profile, threads=4)
    share = 2.4 / cost.bandwidth_roof_tokens_per_s(ARCH, Q4_0, four, 64)
    assert cost.decode_tokens_per_s(ARCH, Q4_0, replace(four, decode_efficiency=share),
                                    64) == pytest.approx(2.4, rel=1e-9)


def test_a_passively_cooled_board_computes_at_its_throttled_clock() -> None:
    # one A76 thread is compute bound: a bare board at its sustained 1.5 GHz instead of
    # 2.4 GHz decodes slower by exactly the clock ratio; memory-bound decode does not change
    active = replace(load_profiles()["rpi5-8gb"], threads=1, cooling="active")
    passive = replace(active, cooling="passive")
    assert passive.throttled_clock_ghz and passive.throttled_clock_ghz < active.clock_ghz
    fast = cost.decode_tokens_per_s(ARCH, Q4_0, active, 64)
    slow = cost.decode_tokens_per_s(ARCH, Q4_0, passive, 64)
    assert fast / slow == pytest.approx(active.clock_ghz / passive.throttled_clock_ghz)
    wide_active = replace(active, cores=32, threads=32)
    wide_passive = replace(wide_active, cooling="passive")
    assert cost.decode_tokens_per_s(ARCH, Q4_0, wide_passive, 64) == pytest.approx(
        cost.decode_tokens_per_s(ARCH, Q4_0, wide_active, 64))


def test_calibration_divides_by_the_bytes_roof_alone() -> None:
    # a compute-bound calibration (one A76 thread) stores a small share of bandwidth, not a
    # share of the compute roof (which would read as ~1.0 and over-predict every
    # memory-bound variant afterwards)
    one = replace(load_profiles()["rpi5-8gb"], threads=1)
    four = replace(one, threads=4)
    roof = cost.bandwidth_roof_tokens_per_s(ARCH, Q4_0, one, 64)
    assert roof == cost.bandwidth_roof_tokens_per_s(ARCH, Q4_0, four, 64)
    assert roof == pytest.approx(
        speed.rates(one).roof_bandwidth / cost.bytes_read_per_token(ARCH, Q4_0, 64))
    assert 0.85 / roof < 0.5


def test_ttft_is_the_prefill_and_the_plan_agrees() -> None:
    # the first token is sampled from the prompt's last logits: no decode step before it
    profile = load_profiles()["rpi5-8gb"]
    model = ModelSpec(name="m", title="m", arch=ARCH, variants=(Q4_0, Q2_K), default_ctx=4096)
    choice = choose(model, profile, Request(ctx=4096, prompt_tokens=256))
    for cand in choice.candidates:
        prefill = cost.prefill_tokens_per_s(ARCH, profile, cand.variant, 256)
        assert cand.ttft_ms == pytest.approx(1000.0 * 256 / prefill, rel=1e-9)
        assert cand.ttft_ms == pytest.approx(cost.ttft_ms(ARCH, profile, 256, cand.variant),
                                             rel=1e-9)
