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
DEFAULT_EFFICIENCY = 0.6


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
    """n_layer x ctx x n_head_kv x head_dim x 2 (K and V) x bytes per element."""
    return arch.n_layer * ctx * arch.n_head_kv * arch.head_dim * 2 * KV_BYTES_PER_ELEMENT


def compute_buffer_bytes(arch: Architecture, ctx: int) -> int:
    """Ollama's full-offload graph size for llama (facts.md §2.3) plus the logits buffer."""
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
        compute=compute_buffer_bytes(arch, ctx),
        overhead=RUNTIME_OVERHEAD_BYTES,
    )


def bytes_read_per_token(arch: Architecture, variant: Variant, n_past: int) -> float:
    """Active weights plus the KV cache read at position ``n_past``."""
    active_share = arch.params_per_token / arch.params if arch.params else 1.0
    kv_per_token = kv_cache_bytes(arch, 1)
    return variant.size_bytes * active_share + kv_per_token * n_past


def decode_tokens_per_s(
    arch: Architecture, variant: Variant, profile: Profile, n_past: int,
    efficiency: float = DEFAULT_EFFICIENCY,
) -> float:
    bandwidth = profile.effective_bandwidth_gbps * 1e9
    if bandwidth <= 0:
        return 0.0
    return efficiency * bandwidth / bytes_read_per_token(arch, variant, n_past)


def energy_per_token_j(tokens_per_s: float, profile: Profile) -> float:
    """Load power over decode speed; 0 when either is unknown."""
    if tokens_per_s <= 0 or profile.load_w <= 0:
        return 0.0
    return profile.load_w / tokens_per_s
