"""Cost model: memory need, decode and prefill speed, energy per token of a variant on a device.

Memory follows llama.cpp's own accounting (checked against the buffer sizes llama.cpp reports
when it loads the tiny models the tests build, tests/unit/test_cost_memory.py): weights + KV
cache at the requested context + compute buffer + output buffer + a fixed runtime overhead.
Speed is ``controller.core.speed`` (roofs, backends, calibration); this module keeps the entry
points the selector, calibration and planning use.
"""

from __future__ import annotations

from dataclasses import dataclass

from controller.core import speed
from controller.core.cost_constants import CONSTANTS, KV_BYTES_PER_ELEMENT, CostConstants
from controller.core.models import MIB, Architecture, Profile, Variant

# llama-cpp-python's defaults, which the agent uses: n_ubatch 512, one sequence.
UBATCH = 512
N_SEQ = 1
F32 = 4
# A worker process with Python, llama.cpp and its backend context, before weights, KV cache
# and compute buffer. Measured: a tiny-llama worker at ctx 512 holds RSS = weights + 57-78 MiB
# (x86_64, llama-cpp-python 0.3.36), of which KV + compute are ~26 MiB by this model.
RUNTIME_OVERHEAD_BYTES = 48 * MIB


@dataclass(frozen=True)
class MemoryEstimate:
    weights: int
    kv_cache: int
    compute: int
    overhead: int
    output: int = 0  # llama.cpp's output (logits) buffer: n_vocab floats per sequence

    @property
    def total(self) -> int:
        return self.weights + self.kv_cache + self.compute + self.overhead + self.output


def kv_cache_bytes(arch: Architecture, ctx: int) -> int:
    """Sum over layers of ctx x n_head_kv(layer) x head_dim x 2 (K and V) x bytes/element."""
    return arch.kv_heads_total * ctx * arch.head_dim * 2 * KV_BYTES_PER_ELEMENT


def compute_buffer_bytes(arch: Architecture, ctx: int) -> int:
    """The largest set of live F32 activations of one ubatch, as llama.cpp reserves it.

    llama.cpp sizes the compute buffer for a worst-case ubatch of u = min(ctx, n_ubatch) tokens
    that all produce logits: the biggest of the logits (n_vocab x u), the attention scores of
    all heads plus the mask (n_ctx x u x (n_head + 1); flash attention off, llama-cpp-python's
    default) and the feed-forward pair (2 x n_ff x u), plus a few n_embd x u rows. Logits are
    not counted again in the output buffer: that holds only the last token's (``output``).
    A tensor model's activations are counted as one more copy of its weights instead
    (``estimate_memory``).
    """
    if not arch.is_language_model:
        return 0
    u = min(ctx, UBATCH)
    rows = arch.n_embd * u * F32
    ff = arch.n_ff * max(arch.n_expert_used, 1)
    return max(
        arch.n_vocab * u * F32 + 3 * rows,
        ctx * u * (arch.n_head + 1) * F32 + 6 * rows,
        2 * ff * u * F32 + 4 * rows,
    )


def output_buffer_bytes(arch: Architecture) -> int:
    """Logits (and embeddings) kept for the last token of each sequence."""
    return (arch.n_vocab + arch.n_embd) * F32 * N_SEQ if arch.is_language_model else 0


def estimate_memory(arch: Architecture, variant: Variant, ctx: int) -> MemoryEstimate:
    return MemoryEstimate(
        weights=variant.size_bytes,
        kv_cache=kv_cache_bytes(arch, ctx),
        compute=compute_buffer_bytes(arch, ctx) if arch.is_language_model
        else variant.size_bytes,
        overhead=RUNTIME_OVERHEAD_BYTES,
        output=output_buffer_bytes(arch),
    )


def bytes_read_per_token(arch: Architecture, variant: Variant, n_past: int) -> float:
    """Weights streamed per token (active experts only, no untied input embedding) plus the KV
    cache read at position ``n_past``: the physical bytes, before any efficiency."""
    return speed.work(arch, variant, CostConstants(kappa_moe=1.0)).bytes_at(n_past)


def decode_tokens_per_s(
    arch: Architecture, variant: Variant, profile: Profile, n_past: int, *,
    backend: str | None = None,
    runtime: str = speed.DEFAULT_RUNTIME, threads: int = 0,
    constants: CostConstants = CONSTANTS,
) -> float:
    """Predicted decode tokens/s at context position ``n_past`` (0 when unknown).

    ``backend``/``runtime``/``threads`` override what the profile implies.
    """
    if not arch.is_language_model:
        return 0.0
    r = speed.rates(profile, backend=backend, runtime=speed.kernel_family(runtime, variant),
                    threads=threads, c=constants)
    return speed.decode_tps(speed.work(arch, variant, constants), r, n_past)


def bandwidth_roof_tokens_per_s(arch: Architecture, variant: Variant, profile: Profile,
                                n_past: int) -> float:
    """Decode speed at 100 % of the device's roof bandwidth, bytes alone (no compute roof, no
    per-layer overhead): the denominator of calibration, whose share prices bytes."""
    if not arch.is_language_model:
        return 0.0
    roof = speed.rates(profile).roof_bandwidth
    # the bytes the calibrated prediction divides (MoE inflated)
    per_token = speed.work(arch, variant).bytes_at(n_past)
    return roof / per_token if roof > 0 and per_token > 0 else 0.0


def _int_variant(arch: Architecture) -> Variant:
    return Variant(name="", format="gguf", quant="Q4_0", size_bytes=max(arch.params // 2, 1),
                   bits_per_weight=4.5, quality_kld=0.0, quality_source="", source="")


def prefill_tokens_per_s(arch: Architecture, profile: Profile, variant: Variant | None = None,
                         prompt_tokens: int = UBATCH, *, backend: str | None = None,
                         runtime: str = speed.DEFAULT_RUNTIME, threads: int = 0,
                         constants: CostConstants = CONSTANTS) -> float:
    """Compute-bound prompt processing in tokens/s (0 when the profile has no compute data)."""
    if not arch.is_language_model:
        return 0.0
    r = speed.rates(profile, backend=backend, runtime=speed.kernel_family(runtime, variant),
                    threads=threads, c=constants)
    w = speed.work(arch, variant or _int_variant(arch), constants)
    return speed.prefill_tps(w, r, prompt_tokens)


def ttft_ms(arch: Architecture, profile: Profile, prompt_tokens: int,
            variant: Variant | None = None) -> float:
    """Predicted time to first token: the prompt's prefill (the first token is sampled from
    the last prompt token's logits, as llama.cpp's generate loop does: no decode step comes
    before it); 0 when the profile says nothing about its compute."""
    tps = prefill_tokens_per_s(arch, profile, variant, prompt_tokens)
    return 1000.0 * prompt_tokens / tps if tps > 0 else 0.0


def energy_per_token_j(tokens_per_s: float, profile: Profile) -> float:
    """Load power over decode speed; 0 when either is unknown."""
    if tokens_per_s <= 0 or profile.load_w <= 0:
        return 0.0
    return profile.load_w / tokens_per_s
