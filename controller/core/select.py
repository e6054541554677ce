"""The variant selector: per device, filter by fit, pick by the objective, explain every loser.

Pure: takes a model, a profile and the request; returns a ``Choice`` that carries, for every
variant, its predicted memory, speed and energy and the reason it won or lost. Reasons are
formatted when read, so planning a large fleet does not pay for text nobody prints.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from controller.core import cost, speed
from controller.core.models import MIB, ModelSpec, Profile, Variant
from controller.core.objective import OBJECTIVES, balanced_rows, pick

__all__ = ["OBJECTIVES", "Candidate", "Choice", "Request", "VariantCost", "choose",
           "choose_many", "variant_costs"]
# Never plan a device's disk to the last byte; the agent's preflight keeps the same margin
# (agent.core.DISK_MARGIN_BYTES).
DISK_MARGIN_BYTES = 64 * MIB
LAB_SCALE_MODEL = "lab-scale-model"


def _mib(n: float) -> str:
    return f"{n / MIB:,.0f} MiB" if n >= 10 * MIB else f"{n / MIB:.1f} MiB"


class Candidate(NamedTuple):
    variant: Variant
    memory: cost.MemoryEstimate
    tokens_per_s: float
    joules_per_token: float
    fits: bool
    why: tuple[tuple[Any, ...], ...]  # what ``reason`` says, as data
    ttft_ms: float = 0.0

    @property
    def kld(self) -> float:
        return self.variant.quality_kld

    @property
    def size(self) -> int:
        return self.variant.size_bytes

    @property
    def reason(self) -> str:
        return "; ".join(_say(self, item) for item in self.why)


def _say(c: Candidate, item: tuple[Any, ...]) -> str:
    kind = item[0]
    if kind == "fits":
        return f"fits: {_mib(item[1])} of {_mib(item[2])} usable{_beside(item[3:])}"
    if kind == "ctx":
        return f"context {item[1]} > the model's {item[2]}"
    if kind == "runtime":
        return f"needs {item[1]}, device has {', '.join(item[2])}"
    if kind == "ep":
        return f"needs {item[1]}, device has {', '.join(item[2]) or 'none'}"
    if kind == "mem":
        held = item[5] if len(item) > 5 else ()
        return (f"needs {_mib(item[1])} > {_mib(item[2])} usable{_beside((held,))} "
                f"(RAM {_mib(item[3])} - reserve {_mib(item[4])}"
                + (f" - {_mib(sum(b for _, b in held))} of the models it keeps)" if held
                   else ")"))
    if kind == "disk":
        return (f"file {_mib(item[1])} + {_mib(DISK_MARGIN_BYTES)} margin > "
                f"{_mib(item[2])} free disk (the current model is kept for rollback)")
    if kind == "tps":
        return f"predicted {item[1]:.1f} tok/s < required {item[2]:g}"
    if kind == "ttft":
        return (f"predicted TTFT {item[1]:.0f} ms > allowed {item[2]:g} ms "
                f"for {item[3]} prompt tokens")
    return _lost(c, item[1][0], item[2])


def _beside(rest: tuple[Any, ...]) -> str:
    """" beside a (12 MiB), b (40 MiB)": the models a device keeps while this one loads."""
    held = rest[0] if rest else ()
    if not held:
        return ""
    return " beside " + ", ".join(f"{name} ({_mib(n)})" for name, n in held)


def _lost(c: Candidate, winner: Candidate, prefer: str) -> str:
    w = winner.variant.name
    if prefer == "speed":
        return (f"fits, but slower than {w} "
                f"({c.tokens_per_s:.1f} vs {winner.tokens_per_s:.1f} tok/s predicted)")
    if prefer == "energy":
        if c.joules_per_token and winner.joules_per_token:
            return (f"fits, but costs more energy than {w} "
                    f"({c.joules_per_token:.2f} vs {winner.joules_per_token:.2f} J/token)")
        return (f"fits, but slower (so more energy per token) than {w} "
                f"({c.tokens_per_s:.1f} vs {winner.tokens_per_s:.1f} tok/s)")
    if prefer == "quality" and c.kld < winner.kld:
        return (f"fits, higher quality (KLD {c.kld:.4f} vs {winner.kld:.4f}) but slower than "
                f"{w} ({c.tokens_per_s:.1f} vs {winner.tokens_per_s:.1f} tok/s predicted): "
                "the difference in quality is too small to see")
    if prefer == "quality" and c.tokens_per_s > winner.tokens_per_s:
        return (f"fits, faster than {w} ({c.tokens_per_s:.1f} vs {winner.tokens_per_s:.1f} "
                f"tok/s) but loses more quality (KLD {c.kld:.4f} vs {winner.kld:.4f})")
    return (f"fits, but lower quality than {w} "
            f"(KLD {c.kld:.4f} vs {winner.kld:.4f})")


class Choice:
    """One device's pick: ``chosen`` (None if nothing qualifies), every variant in
    ``candidates`` (the winner first) with why it won or lost, and ``reason``. A fleet plan
    builds ``candidates`` and ``reason`` only when they are read (pass a callable)."""

    __slots__ = ("_candidates", "_reason", "chosen", "ctx", "device", "profile")

    def __init__(self, device: str, profile: Profile, ctx: int, chosen: Candidate | None,
                 candidates: tuple[Candidate, ...] | Callable[[], tuple[Candidate, ...]],
                 reason: str | Callable[[], str]) -> None:
        self.device, self.profile, self.ctx, self.chosen = device, profile, ctx, chosen
        self._candidates, self._reason = candidates, reason

    @property
    def candidates(self) -> tuple[Candidate, ...]:
        if callable(self._candidates):
            self._candidates = self._candidates()
        return self._candidates

    @property
    def reason(self) -> str:
        if callable(self._reason):
            self._reason = self._reason()
        return self._reason

    def __repr__(self) -> str:
        return (f"Choice(device={self.device!r}, profile={self.profile.name!r}, ctx={self.ctx}, "
                f"chosen={self.chosen and self.chosen.variant.name!r}, reason={self.reason!r})")


@dataclass(frozen=True)
class Request:
    ctx: int
    min_tokens_per_s: float = 0.0
    max_ttft_ms: float = 0.0  # 0: no limit
    prompt_tokens: int = 128  # the prompt length TTFT is predicted for
    prefer: str = "quality"  # quality | max-quality | speed | energy
    disk_free_bytes: int | None = None  # None: unknown, not checked; 0 is a full disk
    blobs_held: frozenset[str] = frozenset()  # sha256 of files the device already holds
    # the models the device keeps beside the new one, (name, memory bytes): the new model
    # gets what they leave of the device's usable memory (several models per device)
    resident: tuple[tuple[str, int], ...] = ()

    def usable(self, profile: Profile) -> int:
        """The memory the new model may use on a device of ``profile``."""
        if not self.resident:
            return profile.usable_bytes
        return max(0, profile.usable_bytes - sum(n for _, n in self.resident))


@dataclass(frozen=True)
class VariantCost:
    """What does not depend on the device: memory need and the work per token."""

    memory: cost.MemoryEstimate
    work: speed.Work
    bytes_per_token: float  # physical bytes read at n_past = ctx / 2
    total: int = 0  # memory.total, kept to compare with each device's budget
    decode_bytes: float = 0.0  # streamed at n_past = ctx / 2 (with MoE inefficiency)
    decode_macs: float = 0.0
    prefill_macs: float = 0.0  # per prompt token


def variant_costs(model: ModelSpec, req: Request) -> dict[str, VariantCost]:
    n_past = req.ctx // 2
    out = {}
    for v in model.variants:
        memory = cost.estimate_memory(model.arch, v, req.ctx)
        w = speed.work(model.arch, v)
        out[v.name] = VariantCost(
            memory, w, cost.bytes_read_per_token(model.arch, v, n_past), memory.total,
            w.bytes_at(n_past), w.macs_at(n_past), speed.prefill_macs(w, req.prompt_tokens))
    return out


_Speeds = list[tuple[float, float, float]]  # per variant: tokens/s, J/token, TTFT ms


def _speed_key(p: Profile) -> tuple[Any, ...]:
    """Everything of a profile the speed model reads (RAM, disk and names do not matter)."""
    return (p.arch, p.bandwidth_gbps, p.bandwidth_measured_gbps, p.decode_bandwidth_gbps,
            p.clock_ghz, p.simd_bits, p.simd_pipes, p.threads, p.cores, p.isa, p.accelerated,
            p.gpu_backend, p.gpu_tflops, p.gpu_clock_ghz, p.cooling, p.throttled_clock_ghz,
            p.decode_efficiency, p.load_w)


def _speeds(model: ModelSpec, profile: Profile, req: Request,
            fixed: dict[str, VariantCost]) -> _Speeds:
    rates = speed.rates(profile)
    if not model.arch.is_language_model:
        return [(0.0, 0.0, 0.0)] * len(model.variants)
    n_layer, prompt, load_w = model.arch.n_layer, req.prompt_tokens, profile.load_w
    out = []
    for variant in model.variants:
        f = fixed[variant.name]
        is_float, kernel = f.work.is_float, f.work.kernel
        t = speed.decode_seconds_at(f.decode_bytes, f.decode_macs, n_layer, is_float, rates,
                                    kernel)
        tps = 1.0 / t if t > 0 else 0.0
        pre = speed.prefill_rate(rates, is_float, kernel)
        # TTFT: the prompt's prefill; the first token comes from its last logits
        ttft = 1000.0 * prompt * f.prefill_macs / pre if pre > 0 else 0.0
        out.append((tps, load_w / tps if tps > 0 and load_w > 0 else 0.0, ttft))
    return out


def _assess_all(model: ModelSpec, profile: Profile, req: Request,
                fixed: dict[str, VariantCost], box: list[Candidate],
                speeds: _Speeds) -> list[Candidate]:
    """Every variant on one device; a fleet plan runs this for every device and variant, so
    the device's numbers are held in locals. A variant that fits is explained as losing to
    ``box[0]``, filled in once the winner is known."""
    usable, held = req.usable(profile), req.resident
    ctx_problem: tuple[tuple[Any, ...], ...] = (
        (("ctx", req.ctx, model.arch.n_ctx_train),) if req.ctx > model.arch.n_ctx_train else ())
    runtimes, eps = profile.runtimes, profile.execution_providers
    disk_free, held_blobs = req.disk_free_bytes, req.blobs_held
    min_tps, max_ttft, prompt = req.min_tokens_per_s, req.max_ttft_ms, req.prompt_tokens
    lost = (("lost", box, req.prefer),)
    new = tuple.__new__
    costs = [fixed[v.name] for v in model.variants]
    if not (ctx_problem or runtimes or disk_free is not None or min_tps or max_ttft):
        # only memory differs between devices here (a plan of declared profiles)
        ram, reserve = profile.ram_bytes, profile.reserve_bytes
        return [new(Candidate, (v, f.memory, tps, jpt, True, lost, ttft)) if f.total <= usable
                else new(Candidate, (v, f.memory, tps, jpt, False,
                                     (("mem", f.total, usable, ram, reserve, held),), ttft))
                for v, f, (tps, jpt, ttft) in zip(model.variants, costs, speeds, strict=True)]
    out = []
    for variant, f, (tps, jpt, ttft) in zip(model.variants, costs, speeds, strict=True):
        problems = ctx_problem
        if runtimes:
            if not any(r.startswith(variant.runtime) for r in runtimes):
                problems += (("runtime", variant.runtime, runtimes),)
            if variant.execution_provider and variant.execution_provider not in eps:
                problems += (("ep", variant.execution_provider, eps),)
        if f.total > usable:
            problems += (("mem", f.total, usable, profile.ram_bytes, profile.reserve_bytes,
                          held),)
        if disk_free is not None and variant.size_bytes + DISK_MARGIN_BYTES > disk_free and not (
                variant.sha256 and variant.sha256 in held_blobs):
            problems += (("disk", variant.size_bytes, disk_free),)
        if min_tps and tps < min_tps:
            problems += (("tps", tps, min_tps),)
        if max_ttft and ttft > max_ttft:
            problems += (("ttft", ttft, max_ttft, prompt),)
        out.append(new(Candidate, (variant, f.memory, tps, jpt, not problems,
                                   problems or lost, ttft)))
    return out


def _decide(fitting: list[Candidate], profile: Profile,
            prefer: str) -> tuple[Candidate, str, str]:
    """The winner among fitting candidates, the rule that chose it, and a note on why."""
    if prefer == "quality" and profile.kind == LAB_SCALE_MODEL:
        # a lab scale model runs a few-MB test model: its speed says nothing about the
        # real device it stands for, so only memory decides (what the lab demonstrates)
        won, rule = pick(fitting, "max-quality")
        note = "; a lab scale model: memory decides, not its test speed"
    elif prefer == "quality":
        (won, rule), note = balanced_rows([(c[0].quality_kld, c[2], c[0].size_bytes, c)
                                           for c in fitting]), ""
    else:
        (won, rule), note = pick(fitting, prefer), ""
    return next(c for c in fitting if c is won), rule, note


def _won_reason(winner: Candidate, rule: str, note: str, usable: int,
                held: tuple[tuple[str, int], ...] = ()) -> str:
    return (f"{winner.variant.name}: {rule} that fits "
            f"({_mib(winner.memory.total)} of {_mib(usable)} usable{_beside((held,))}, "
            f"~{winner.tokens_per_s:.1f} tok/s predicted){note}")


def _none_reason(assessed: Sequence[Candidate], ctx: int, usable: int,
                 held: tuple[tuple[str, int], ...] = ()) -> str:
    smallest = min(assessed, key=lambda c: c.memory.total)
    short = smallest.memory.total - usable
    if short > 0 and held:
        kept = sum(n for _, n in held)
        biggest = max(held, key=lambda h: h[1])[0]
        return (f"nothing fits beside the models it keeps: smallest variant "
                f"{smallest.variant.name} needs {_mib(smallest.memory.total)} at ctx {ctx}, "
                f"{_mib(usable)} is left of {_mib(usable + kept)} usable once "
                f"{', '.join(f'{name} ({_mib(n)})' for name, n in held)} stay (short by "
                f"{_mib(short)}); deploy with --replace to run it instead of them ({biggest} "
                "holds the most)")
    if short > 0:
        return (f"nothing fits: smallest variant {smallest.variant.name} needs "
                f"{_mib(smallest.memory.total)} at ctx {ctx}, device has "
                f"{_mib(usable)} usable (short by {_mib(short)})")
    return f"no variant qualifies: {smallest.variant.name}: {smallest.reason}"


def choose_many(model: ModelSpec, devices: Sequence[tuple[str, Profile]],
                req: Request) -> list[Choice]:
    """``choose`` for a fleet: what does not depend on the device is computed once per
    variant, the speeds once per kind of device, and, where only memory tells devices of a
    kind apart (no runtime, disk, speed or TTFT filter), the pick once per kind and number of
    variants that fit; each device's own explanation is built when it is read."""
    if req.prefer not in OBJECTIVES:
        raise ValueError(f"prefer must be one of {OBJECTIVES}")
    fixed = variant_costs(model, req)
    cache: dict[tuple[Any, ...], _Speeds] = {}
    if (req.ctx > model.arch.n_ctx_train or req.disk_free_bytes is not None
            or req.resident or req.min_tokens_per_s
            or req.max_ttft_ms):
        return [choose(model, profile, req, name, fixed, cache) for name, profile in devices]
    totals = sorted(fixed[v.name].total for v in model.variants)
    picks: dict[tuple[Any, ...], tuple[Choice, str, str]] = {}
    out = []
    for name, profile in devices:
        if profile.runtimes:
            out.append(choose(model, profile, req, name, fixed, cache))
            continue
        usable = profile.usable_bytes
        key = (_speed_key(profile), profile.kind, bisect_right(totals, usable))
        known = picks.get(key)
        if known is None:
            known = picks[key] = _choose(model, profile, req, name, fixed, cache)
            out.append(known[0])
        else:
            out.append(_like(name, profile, req, *known, usable))
    return out


def _like(device: str, profile: Profile, req: Request, like: Choice, rule: str, note: str,
          usable: int) -> Choice:
    """A device's choice where another device of its kind with the same variants fitting
    has been decided: the same pick, explained with this device's memory."""
    chosen = like.chosen

    def candidates() -> tuple[Candidate, ...]:
        ram, reserve = profile.ram_bytes, profile.reserve_bytes
        out = [c if c[4] else c._replace(why=(("mem", c.memory.total, usable, ram, reserve),))
               for c in like.candidates]
        if chosen is not None:
            out[0] = chosen
        return tuple(out)

    if chosen is None:
        return Choice(device, profile, req.ctx, None, candidates,
                      lambda: _none_reason(candidates(), req.ctx, usable))
    v, memory, tps, jpt, _, why, ttft = chosen
    chosen = tuple.__new__(Candidate, (v, memory, tps, jpt, True,
                                       (("fits", why[0][1], usable),), ttft))
    return Choice(device, profile, req.ctx, chosen, candidates,
                  lambda: _won_reason(chosen, rule, note, usable))


def choose(model: ModelSpec, profile: Profile, req: Request, device: str = "",
           fixed: dict[str, VariantCost] | None = None,
           speed_cache: dict[tuple[Any, ...], _Speeds] | None = None) -> Choice:
    """Pick, among variants that pass every filter, the best by ``req.prefer``."""
    if req.prefer not in OBJECTIVES:
        raise ValueError(f"prefer must be one of {OBJECTIVES}")
    return _choose(model, profile, req, device, fixed, speed_cache)[0]


def _choose(model: ModelSpec, profile: Profile, req: Request, device: str,
            fixed: dict[str, VariantCost] | None,
            speed_cache: dict[tuple[Any, ...], _Speeds] | None) -> tuple[Choice, str, str]:
    """``choose``, and the rule and note that made the pick (for devices that share it)."""
    fixed = fixed or variant_costs(model, req)
    if speed_cache is None:
        speeds = _speeds(model, profile, req, fixed)
    else:
        key = _speed_key(profile)
        speeds = speed_cache.get(key) or speed_cache.setdefault(
            key, _speeds(model, profile, req, fixed))
    box: list[Candidate] = []
    assessed = _assess_all(model, profile, req, fixed, box, speeds)
    usable, held = req.usable(profile), req.resident
    fitting = [c for c in assessed if c[4]]
    if not fitting:
        return Choice(device, profile, req.ctx, None, tuple(assessed),
                      _none_reason(assessed, req.ctx, usable, held)), "", ""
    won, rule, note = _decide(fitting, profile, req.prefer)
    winner = won._replace(why=(("fits", won.memory.total, usable, held),))
    box.append(winner)
    explained = (winner, *(c for c in assessed if c is not won))
    return Choice(device, profile, req.ctx, winner, explained,
                  _won_reason(winner, rule, note, usable, held)), rule, note
