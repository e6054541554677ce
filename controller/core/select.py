"""The variant selector: per device, filter by fit, rank by quality, explain every loser.

Pure: takes a model, a profile and the request; returns a ``Choice`` that carries, for every
variant, its predicted memory, speed and energy and the reason it won or lost.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

from controller.core import cost
from controller.core.models import MIB, ModelSpec, Profile, Variant

OBJECTIVES = ("quality", "speed", "energy")
# Never plan a device's disk to the last byte; the agent's preflight keeps the same margin
# (agent.core.DISK_MARGIN_BYTES).
DISK_MARGIN_BYTES = 64 * MIB


@dataclass(frozen=True)
class Candidate:
    variant: Variant
    memory: cost.MemoryEstimate
    tokens_per_s: float
    joules_per_token: float
    fits: bool
    reason: str
    ttft_ms: float = 0.0


@dataclass(frozen=True)
class Choice:
    device: str
    profile: Profile
    ctx: int
    chosen: Candidate | None
    candidates: tuple[Candidate, ...]
    reason: str


@dataclass(frozen=True)
class Request:
    ctx: int
    min_tokens_per_s: float = 0.0
    max_ttft_ms: float = 0.0  # 0: no limit
    prompt_tokens: int = 128  # the prompt length TTFT is predicted for
    prefer: str = "quality"  # quality | speed | energy
    disk_free_bytes: int | None = None  # None: unknown, not checked; 0 is a full disk
    blobs_held: frozenset[str] = frozenset()  # sha256 of files the device already holds


def _mib(n: float) -> str:
    return f"{n / MIB:,.0f} MiB" if n >= 10 * MIB else f"{n / MIB:.1f} MiB"


@dataclass(frozen=True)
class VariantCost:
    """What does not depend on the device: memory need and bytes read per token."""

    memory: cost.MemoryEstimate
    bytes_per_token: float


def variant_costs(model: ModelSpec, req: Request) -> dict[str, VariantCost]:
    return {
        v.name: VariantCost(cost.estimate_memory(model.arch, v, req.ctx),
                            cost.bytes_read_per_token(model.arch, v, n_past=req.ctx // 2))
        for v in model.variants
    }


def _assess(model: ModelSpec, variant: Variant, profile: Profile, req: Request,
            fixed: VariantCost, ttft: float) -> Candidate:
    memory = fixed.memory
    bandwidth = profile.effective_bandwidth_gbps * 1e9
    tps = (cost.decode_efficiency(profile) * bandwidth / fixed.bytes_per_token
           if model.arch.is_language_model else 0.0)
    jpt = cost.energy_per_token_j(tps, profile)
    usable = profile.usable_bytes
    problems = []
    if req.ctx > model.arch.n_ctx_train:
        problems.append(f"context {req.ctx} > the model's {model.arch.n_ctx_train}")
    if profile.runtimes and not any(r.startswith(variant.runtime) for r in profile.runtimes):
        problems.append(f"needs {variant.runtime}, device has {', '.join(profile.runtimes)}")
    if variant.execution_provider and profile.runtimes and (
            variant.execution_provider not in profile.execution_providers):
        problems.append(f"needs {variant.execution_provider}, device has "
                        f"{', '.join(profile.execution_providers) or 'none'}")
    if memory.total > usable:
        problems.append(
            f"needs {_mib(memory.total)} > {_mib(usable)} usable "
            f"(RAM {_mib(profile.ram_bytes)} - reserve {_mib(profile.reserve_bytes)})"
        )
    held = bool(variant.sha256) and variant.sha256 in req.blobs_held  # costs no disk
    if req.disk_free_bytes is not None and not held and (
            variant.size_bytes + DISK_MARGIN_BYTES > req.disk_free_bytes):
        problems.append(
            f"file {_mib(variant.size_bytes)} + {_mib(DISK_MARGIN_BYTES)} margin > "
            f"{_mib(req.disk_free_bytes)} free disk (the current model is kept for rollback)"
        )
    if req.min_tokens_per_s and tps < req.min_tokens_per_s:
        problems.append(f"predicted {tps:.1f} tok/s < required {req.min_tokens_per_s:g}")
    if req.max_ttft_ms and ttft > req.max_ttft_ms:
        problems.append(f"predicted TTFT {ttft:.0f} ms > allowed {req.max_ttft_ms:g} ms "
                        f"for {req.prompt_tokens} prompt tokens")
    reason = "; ".join(problems) if problems else (
        f"fits: {_mib(memory.total)} of {_mib(usable)} usable"
    )
    return Candidate(variant, memory, tps, jpt, not problems, reason, ttft)


def _rank_key(prefer: str) -> Callable[[Candidate], tuple[float, ...]]:
    """Best first. Ties go to quality, then to the smaller file."""
    if prefer == "speed":
        return lambda c: (-c.tokens_per_s, c.variant.quality_kld, c.variant.size_bytes)
    if prefer == "energy":
        # Without a power figure J/token is unknown (0); speed is then the proxy, since at
        # constant device power energy per token falls as speed rises.
        return lambda c: (c.joules_per_token or 1.0 / max(c.tokens_per_s, 1e-9),
                          c.variant.quality_kld, c.variant.size_bytes)
    return lambda c: (c.variant.quality_kld, -c.tokens_per_s, c.variant.size_bytes)


def _lost_because(c: Candidate, winner: Candidate, prefer: str) -> str:
    if prefer == "speed":
        return (f"fits, but slower than {winner.variant.name} "
                f"({c.tokens_per_s:.1f} vs {winner.tokens_per_s:.1f} tok/s predicted)")
    if prefer == "energy":
        if c.joules_per_token and winner.joules_per_token:
            return (f"fits, but costs more energy than {winner.variant.name} "
                    f"({c.joules_per_token:.2f} vs {winner.joules_per_token:.2f} J/token)")
        return (f"fits, but slower (so more energy per token) than {winner.variant.name} "
                f"({c.tokens_per_s:.1f} vs {winner.tokens_per_s:.1f} tok/s)")
    return (f"fits, but lower quality than {winner.variant.name} "
            f"(KLD {c.variant.quality_kld:.4f} vs {winner.variant.quality_kld:.4f})")


_WHAT_WON = {"quality": "highest quality", "speed": "fastest", "energy": "least energy"}


def choose_many(model: ModelSpec, devices: Sequence[tuple[str, Profile]],
                req: Request) -> list[Choice]:
    """``choose`` for a fleet: what does not depend on the device is computed once per
    variant instead of once per device and variant."""
    fixed = variant_costs(model, req)
    return [choose(model, profile, req, name, fixed) for name, profile in devices]


def choose(model: ModelSpec, profile: Profile, req: Request, device: str = "",
           fixed: dict[str, VariantCost] | None = None) -> Choice:
    """Pick, among variants that pass every filter, the best by ``req.prefer``."""
    if req.prefer not in OBJECTIVES:
        raise ValueError(f"prefer must be one of {OBJECTIVES}")
    fixed = fixed or variant_costs(model, req)
    ttft = cost.ttft_ms(model.arch, profile, req.prompt_tokens)
    assessed = [_assess(model, v, profile, req, fixed[v.name], ttft) for v in model.variants]
    ranked = sorted(assessed, key=_rank_key(req.prefer))
    winner = next((c for c in ranked if c.fits), None)
    explained = []
    for c in ranked:
        if winner is None or c is winner or not c.fits:
            explained.append(c)
        else:
            explained.append(replace(c, reason=_lost_because(c, winner, req.prefer)))
    if winner is not None:
        reason = (
            f"{winner.variant.name}: {_WHAT_WON[req.prefer]} that fits "
            f"({_mib(winner.memory.total)} of {_mib(profile.usable_bytes)} usable, "
            f"~{winner.tokens_per_s:.1f} tok/s predicted)"
        )
    else:
        smallest = min(assessed, key=lambda c: c.memory.total)
        short = smallest.memory.total - profile.usable_bytes
        if short > 0:
            reason = (
                f"nothing fits: smallest variant {smallest.variant.name} needs "
                f"{_mib(smallest.memory.total)} at ctx {req.ctx}, device has "
                f"{_mib(profile.usable_bytes)} usable (short by {_mib(short)})"
            )
        else:
            reason = f"no variant qualifies: {smallest.variant.name}: {smallest.reason}"
    return Choice(device, profile, req.ctx, winner, tuple(explained), reason)
