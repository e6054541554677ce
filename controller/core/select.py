"""The variant selector: per device, filter by fit, rank by quality, explain every loser.

Pure: takes a model, a profile and the request; returns a ``Choice`` that carries, for every
variant, its predicted memory, speed and energy and the reason it won or lost.
"""

from __future__ import annotations

from dataclasses import dataclass

from controller.core import cost
from controller.core.models import MIB, ModelSpec, Profile, Variant


@dataclass(frozen=True)
class Candidate:
    variant: Variant
    memory: cost.MemoryEstimate
    tokens_per_s: float
    joules_per_token: float
    fits: bool
    reason: str


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
    disk_free_bytes: int = 0  # 0: unknown, not checked


def _mib(n: float) -> str:
    return f"{n / MIB:,.0f} MiB" if n >= 10 * MIB else f"{n / MIB:.1f} MiB"


def _assess(model: ModelSpec, variant: Variant, profile: Profile, req: Request) -> Candidate:
    memory = cost.estimate_memory(model.arch, variant, req.ctx)
    tps = cost.decode_tokens_per_s(model.arch, variant, profile, n_past=req.ctx // 2)
    jpt = cost.energy_per_token_j(tps, profile)
    usable = profile.usable_bytes
    problems = []
    if memory.total > usable:
        problems.append(
            f"needs {_mib(memory.total)} > {_mib(usable)} usable "
            f"(RAM {_mib(profile.ram_bytes)} - reserve {_mib(profile.reserve_bytes)})"
        )
    if req.disk_free_bytes and variant.size_bytes > req.disk_free_bytes:
        problems.append(
            f"file {_mib(variant.size_bytes)} > {_mib(req.disk_free_bytes)} free disk"
        )
    if req.min_tokens_per_s and tps < req.min_tokens_per_s:
        problems.append(f"predicted {tps:.1f} tok/s < required {req.min_tokens_per_s:g}")
    reason = "; ".join(problems) if problems else (
        f"fits: {_mib(memory.total)} of {_mib(usable)} usable"
    )
    return Candidate(variant, memory, tps, jpt, not problems, reason)


def choose(model: ModelSpec, profile: Profile, req: Request, device: str = "") -> Choice:
    """Pick the highest-quality (lowest KLD) variant that passes every filter."""
    assessed = [_assess(model, v, profile, req) for v in model.variants]
    ranked = sorted(assessed, key=lambda c: (c.variant.quality_kld, -c.variant.size_bytes))
    winner = next((c for c in ranked if c.fits), None)
    explained = []
    for c in ranked:
        if winner is None or c is winner or not c.fits:
            explained.append(c)
        else:
            lost = (
                f"fits, but lower quality than {winner.variant.name} "
                f"(KLD {c.variant.quality_kld:.4f} vs {winner.variant.quality_kld:.4f})"
            )
            explained.append(Candidate(c.variant, c.memory, c.tokens_per_s,
                                       c.joules_per_token, c.fits, lost))
    if winner is not None:
        reason = (
            f"{winner.variant.name}: highest quality that fits "
            f"({_mib(winner.memory.total)} of {_mib(profile.usable_bytes)} usable, "
            f"~{winner.tokens_per_s:.1f} tok/s predicted)"
        )
    else:
        smallest = min(assessed, key=lambda c: c.memory.total)
        short = smallest.memory.total - profile.usable_bytes
        reason = (
            f"nothing fits: smallest variant {smallest.variant.name} needs "
            f"{_mib(smallest.memory.total)} at ctx {req.ctx}, device has "
            f"{_mib(profile.usable_bytes)} usable"
            + (f" (short by {_mib(short)})" if short > 0 else f" ({smallest.reason})")
        )
    return Choice(device, profile, req.ctx, winner, tuple(explained), reason)
