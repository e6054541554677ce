"""Cost model: memory need, decode speed and energy per token of a variant on a device.

Memory follows the llama.cpp accounting used by gguf-parser and Ollama (``shared/facts.md`` §2):
weights + KV cache at the requested context + compute buffer + output buffer + fixed runtime
overhead. Decode is memory-bandwidth bound (§3.1): every token streams the active weights and
the KV cache read so far.
"""

from __future__ import annotations

from dataclasses import dataclass

from controller.core.models import MIB, Architecture, Profile, Variant

KV_BYTES_PER_ELEMENT = 2  # f16 K and V (llama.cpp default)
UBATCH = 512
# A worker process with Python, llama.cpp and its backend context, before weights, KV cache
# and compute buffer. Measured: a tiny-llama worker at ctx 512 holds RSS = weights + 57-78 MiB
# (x86_64, llama-cpp-python 0.3.36), of which KV + compute are ~26 MiB by this model.
RUNTIME_OVERHEAD_BYTES = 48 * MIB
# CPU decode reaches about 55-65 % of peak bandwidth on a Pi 5, GPU/UMA about 70-75 %
# (facts.md §3.3).
CPU_DECODE_EFFICIENCY = 0.6
GPU_DECODE_EFFICIENCY = 0.75
DEFAULT_EFFICIENCY = CPU_DECODE_EFFICIENCY
# Prefill is compute bound; llama.cpp reaches roughly 40-50 % of peak FLOPS (a Pi 5 runs a
# 3B-active MoE at pp512 10.9 tok/s = ~72 GFLOPS of 154 peak; facts.md §3.3, derived).
PREFILL_EFFICIENCY = 0.4


@dataclass(frozen=True)
class MemoryEstimate:
    weights: int
    kv_cache: int
    compute: int
    overhead: int

    @property
    def total(self) -> int:
        return self.weights + self.kv_cache + self.compute + self.overhead


def kv_cache_bytes(arch: Architecture, ctx: int) -> int:
    """Sum over layers of ctx x n_head_kv(layer) x head_dim x 2 (K and V) x bytes/element."""
    return arch.kv_heads_total * ctx * arch.head_dim * 2 * KV_BYTES_PER_ELEMENT


def compute_buffer_bytes(arch: Architecture, ctx: int) -> int:
    """Ollama's full-offload graph size for llama (facts.md §2.3) plus the logits buffer.

    A tensor model's activations are counted as one more copy of its weights instead
    (``estimate_memory``)."""
    if not arch.is_language_model:
        return 0
    batch = min(ctx, UBATCH)
    graph = max(
        4 * batch * (1 + 4 * arch.n_embd + ctx * (1 + arch.n_head)),
        4 * batch * (arch.n_embd + arch.n_vocab),
    )
    logits = (arch.n_embd + arch.n_vocab) * batch * 4
    return graph + logits


def estimate_memory(arch: Architecture, variant: Variant, ctx: int) -> MemoryEstimate:
    return MemoryEstimate(
        weights=variant.size_bytes,
        kv_cache=kv_cache_bytes(arch, ctx),
        compute=compute_buffer_bytes(arch, ctx) if arch.is_language_model
        else variant.size_bytes,
        overhead=RUNTIME_OVERHEAD_BYTES,
    )


def bytes_read_per_token(arch: Architecture, variant: Variant, n_past: int) -> float:
    """Active weights plus the KV cache read at position ``n_past``."""
    active_share = arch.params_per_token / arch.params if arch.params else 1.0
    kv_per_token = kv_cache_bytes(arch, 1)
    return variant.size_bytes * active_share + kv_per_token * n_past


def decode_efficiency(profile: Profile) -> float:
    """Calibrated per device when measured; else the default for its backend."""
    if profile.decode_efficiency > 0:
        return profile.decode_efficiency
    return GPU_DECODE_EFFICIENCY if profile.accelerated else CPU_DECODE_EFFICIENCY


def decode_tokens_per_s(
    arch: Architecture, variant: Variant, profile: Profile, n_past: int,
    efficiency: float | None = None,
) -> float:
    """Bandwidth-bound decode speed: efficiency x bandwidth / bytes read per token."""
    bandwidth = profile.effective_bandwidth_gbps * 1e9
    if bandwidth <= 0 or not arch.is_language_model:
        return 0.0
    eta = decode_efficiency(profile) if efficiency is None else efficiency
    return eta * bandwidth / bytes_read_per_token(arch, variant, n_past)


def bandwidth_roof_tokens_per_s(arch: Architecture, variant: Variant, profile: Profile,
                                n_past: int) -> float:
    """Decode speed at 100 % of the profile's bandwidth: the denominator of calibration."""
    return decode_tokens_per_s(arch, variant, profile, n_past, efficiency=1.0)


def prefill_tokens_per_s(arch: Architecture, profile: Profile) -> float:
    """Compute-bound prompt processing: 2 FLOPs per active parameter per token."""
    if profile.compute_gflops <= 0 or not arch.is_language_model:
        return 0.0
    return PREFILL_EFFICIENCY * profile.compute_gflops * 1e9 / (2 * arch.params_per_token)


def ttft_ms(arch: Architecture, profile: Profile, prompt_tokens: int) -> float:
    """Predicted time to first token for a prompt; 0 when the profile has no compute figure."""
    tps = prefill_tokens_per_s(arch, profile)
    return 1000.0 * prompt_tokens / tps if tps > 0 else 0.0


def energy_per_token_j(tokens_per_s: float, profile: Profile) -> float:
    """Load power over decode speed; 0 when either is unknown."""
    if tokens_per_s <= 0 or profile.load_w <= 0:
        return 0.0
    return profile.load_w / tokens_per_s
