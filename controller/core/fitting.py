"""Fit the speed model's efficiencies on published measurements, and score it on the rest.

Pure: rows come in as ``PublishedRow`` (loaded by ``controller.adapters.published``). ``fit``
looks at rows whose ``split`` is ``fit`` and nothing else, so held-out rows cannot leak into
the constants however they are passed in. It fits in "physics only" mode (no per-class
published decode bandwidth), so the CPU bandwidth efficiencies are identified too.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace

from controller.core import speed
from controller.core.cost_constants import CONSTANTS, FITTED, CostConstants
from controller.core.models import Architecture, Profile, Variant

METRICS = ("decode", "prefill")
PRIORS = CostConstants()
SPLITS = ("fit", "holdout")


@dataclass(frozen=True)
class PublishedRow:
    id: str
    split: str  # fit | holdout
    device_class: str
    profile: Profile
    arch: Architecture
    variant: Variant
    runtime: str
    backend: str
    threads: int
    metric: str  # decode | prefill
    n_ctx: int  # decode: context position; prefill: prompt tokens
    measured: float  # tokens/s
    source: str
    notes: str = ""

    @property
    def is_moe(self) -> bool:
        return self.arch.is_moe


def predict(row: PublishedRow, c: CostConstants = CONSTANTS,
            use_class_figure: bool = True) -> float:
    r = speed.rates(row.profile, backend=row.backend,
                    runtime=speed.kernel_family(row.runtime, row.variant),
                    threads=row.threads, c=c, use_class_figure=use_class_figure)
    w = speed.work(row.arch, row.variant, c)
    if row.metric == "prefill":
        return speed.prefill_tps(w, r, row.n_ctx)
    return speed.decode_tps(w, r, row.n_ctx)


def error(row: PublishedRow, c: CostConstants = CONSTANTS, use_class_figure: bool = True
          ) -> float:
    """Signed relative error (predicted - measured) / measured."""
    return (predict(row, c, use_class_figure) - row.measured) / row.measured


def _loss(rows: Sequence[PublishedRow], c: CostConstants) -> float:
    total = 0.0
    for row in rows:
        p = predict(row, c, use_class_figure=False)
        total += math.log(p / row.measured) ** 2 if p > 0 else 100.0
    return total


# Search ranges: efficiencies are shares (0, 1]; overheads in ms; kernel costs >= 1.
_RANGES = {"tau_metal_ms": (0.0, 3.0), "tau_cuda_ms": (0.0, 3.0), "tau_mlc_ms": (0.0, 3.0),
           "kernel_cost_q2k_arm": (1.0, 3.0)}
_DEFAULT_RANGE = (0.005, 1.0)
_GOLDEN = (math.sqrt(5) - 1) / 2


def _golden(f: Callable[[float], float], lo: float, hi: float, steps: int = 40) -> float:
    a, b = lo, hi
    x1, x2 = b - _GOLDEN * (b - a), a + _GOLDEN * (b - a)
    f1, f2 = f(x1), f(x2)
    for _ in range(steps):
        if f1 <= f2:
            b, x2, f2 = x2, x1, f1
            x1 = b - _GOLDEN * (b - a)
            f1 = f(x1)
        else:
            a, x1, f1 = x1, x2, f2
            x2 = a + _GOLDEN * (b - a)
            f2 = f(x2)
    return (a + b) / 2


def _round3(x: float) -> float:
    return float(f"{x:.3g}") if x else 0.0


def _along(train: Sequence[PublishedRow], c: CostConstants, name: str
           ) -> Callable[[float], float]:
    def loss(value: float) -> float:
        return _loss(train, replace(c, **{name: value}))
    return loss


def fit(rows: Iterable[PublishedRow], start: CostConstants = PRIORS,
        sweeps: int = 15) -> CostConstants:
    """Minimise the squared log error over the ``fit`` rows by coordinate search.

    Starts from the documented priors (``CostConstants()``), never from the shipped values,
    so the result is a function of the fit rows alone. A constant no fit row depends on keeps
    its prior. Deterministic; values rounded to three significant digits.
    """
    train = [r for r in rows if r.split == "fit"]
    c = start
    for _ in range(sweeps):
        before = c
        for name in FITTED:
            lo, hi = _RANGES.get(name, _DEFAULT_RANGE)
            if _loss(train, replace(c, **{name: lo})) == _loss(train, replace(c, **{name: hi})):
                continue  # no fit row depends on it: keep its prior
            best = _golden(_along(train, c, name), lo, hi)
            if _loss(train, replace(c, **{name: best})) < _loss(train, c):
                c = replace(c, **{name: best})
        # pattern move (Hooke-Jeeves): coupled constants (an efficiency and an overhead) zigzag
        # under coordinate search; a step along this sweep's direction shortcuts it
        for factor in (4.0, 2.0, 1.0):
            moved = {n: min(max(getattr(c, n) + factor * (getattr(c, n) - getattr(before, n)),
                                _RANGES.get(n, _DEFAULT_RANGE)[0]),
                            _RANGES.get(n, _DEFAULT_RANGE)[1]) for n in FITTED}
            trial = replace(c, **moved)
            if _loss(train, trial) < _loss(train, c):
                c = trial
                break
    return replace(c, **{n: _round3(getattr(c, n)) for n in FITTED})


@dataclass(frozen=True)
class ClassError:
    device_class: str
    metric: str
    rows: int
    median_abs: float
    worst: float  # signed error of the largest magnitude


def error_table(rows: Iterable[PublishedRow], c: CostConstants = CONSTANTS,
                split: str = "holdout", use_class_figure: bool = True) -> list[ClassError]:
    """Median |error| and worst error per device class and metric, plus an ``all`` line and
    a ``moe`` line (mixture-of-experts rows of every class)."""
    chosen = [r for r in rows if r.split == split]
    groups: dict[tuple[str, str], list[float]] = {}
    for r in chosen:
        e = error(r, c, use_class_figure)
        groups.setdefault((r.device_class, r.metric), []).append(e)
        groups.setdefault(("all", r.metric), []).append(e)
        if r.is_moe:
            groups.setdefault(("moe", r.metric), []).append(e)
    out = []
    order = sorted(k for k in groups if k[0] not in ("all", "moe"))
    for key in [*order, *sorted(k for k in groups if k[0] == "moe"),
                *sorted(k for k in groups if k[0] == "all")]:
        errs = groups[key]
        out.append(ClassError(key[0], key[1], len(errs),
                              statistics.median(abs(e) for e in errs),
                              max(errs, key=abs)))
    return out


def class_bandwidth(row: PublishedRow) -> float:
    """The CPU decode bandwidth (GB/s) a published run implies: bytes per token x tok/s."""
    w = speed.work(row.arch, row.variant, CostConstants(kappa_moe=1.0))
    return (w.weight_bytes + w.kv_bytes_per_position * row.n_ctx) * row.measured / 1e9
