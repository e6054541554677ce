"""Prediction error of the cost model on published measurements the fit never saw.

Reads tests/data/published/measurements.csv (and any --data CSV in the same format, with
--models for the model definitions it names), predicts each row with the shipped constants
and prints, for the held-out rows: every row, then median |error| and the worst error per
device class and metric, with and without the per-class published decode bandwidth
("physics only"). Baseline, same run: the previous model (bandwidth x 0.6 CPU / 0.75 GPU,
spec sheet first; prefill at 40 % of peak FLOPS), on the same rows.

    python bench/prediction_error.py [--all] [--fit] [--data extra.csv --models dir/]

--fit refits the constants on the fit rows (what controller/core/cost_constants.py holds).
Exit status 1 when a target is missed: held-out decode median |error| <= 12 %, every held-out
decode row within +-35 %, held-out prefill median <= 25 %.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from dataclasses import fields
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from controller.adapters.published import load_rows  # noqa: E402
from controller.core import fitting  # noqa: E402
from controller.core.cost_constants import CONSTANTS, FITTED  # noqa: E402
from controller.core.fitting import PublishedRow  # noqa: E402

DATA = ROOT / "tests" / "data" / "published"
DECODE_MEDIAN, DECODE_WORST, PREFILL_MEDIAN = 0.12, 0.35, 0.25


def old_model(row: PublishedRow) -> float:
    """The cost model before issue 16: spec bandwidth x 0.6 (CPU) or 0.75 (GPU) over the
    active share of the file plus KV; prefill at 40 % of the profile's peak FLOPS."""
    p, a, v = row.profile, row.arch, row.variant
    if row.metric == "prefill":
        flops = p.compute_gflops or p.gpu_tflops * 1000
        return 0.4 * flops * 1e9 / (2 * a.params_per_token) if flops else 0.0
    bandwidth = (p.bandwidth_gbps or p.bandwidth_measured_gbps) * 1e9
    eta = 0.6 if row.backend == "cpu" else 0.75
    share = a.params_per_token / a.params
    kv = a.kv_heads_total * a.head_dim * 4 * row.n_ctx
    return eta * bandwidth / (v.size_bytes * share + kv)


def _table(title: str, lines: list[fitting.ClassError]) -> None:
    print(f"\n{title}")
    print(f"  {'class':12} {'metric':8} {'rows':>4} {'median |err|':>13} {'worst':>8}")
    for ce in lines:
        print(f"  {ce.device_class:12} {ce.metric:8} {ce.rows:4} {ce.median_abs:13.1%} "
              f"{ce.worst:+8.1%}")


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--all", action="store_true", help="print fit rows too")
    parser.add_argument("--fit", action="store_true", help="refit the constants and print them")
    parser.add_argument("--data", type=Path, action="append", default=[],
                        help="another CSV in the same format (repeatable)")
    parser.add_argument("--models", type=Path, default=None,
                        help="model definitions the --data rows name")
    args = parser.parse_args()

    rows = load_rows(DATA / "measurements.csv", DATA / "models")
    for extra in args.data:
        rows += load_rows(extra, args.models or DATA / "models")
    if args.fit:
        fitted = fitting.fit(rows)
        print("fitted on", sum(r.split == "fit" for r in rows), "fit rows:")
        for name in FITTED:
            old, new = getattr(CONSTANTS, name), getattr(fitted, name)
            print(f"  {name:22} {new:<10g}" + ("" if old == new else f" (shipped {old:g})"))
        return 0

    shown = [r for r in rows if args.all or r.split == "holdout"]
    print(f"{'split':7} {'row':40} {'measured':>9} {'predicted':>9} {'error':>7} "
          f"{'old model':>9} {'error':>7}")
    for r in shown:
        p, o = fitting.predict(r), old_model(r)
        print(f"{r.split:7} {r.id:40} {r.measured:9.2f} {p:9.2f} {(p / r.measured - 1):+7.0%} "
              f"{o:9.2f} {(o / r.measured - 1 if o else float('nan')):+7.0%}")

    held = [r for r in rows if r.split == "holdout"]
    table = fitting.error_table(rows)
    _table(f"held-out rows ({len(held)} of {len(rows)}; constants fitted on the other "
           f"{len(rows) - len(held)}):", table)
    _table("held-out rows, physics only (no per-class published decode bandwidth):",
           fitting.error_table(rows, use_class_figure=False))

    def med(metric: str, model: object) -> float:
        assert callable(model)
        errs = [abs(model(r) / r.measured - 1) for r in held if r.metric == metric
                and model(r) > 0]
        return statistics.median(errs) if errs else float("nan")

    print("\nbaseline (same rows, same run): median |error|")
    for metric in ("decode", "prefill"):
        new, old = med(metric, fitting.predict), med(metric, old_model)
        print(f"  {metric:8} this model {new:6.1%}   old model {old:6.1%}   "
              f"ratio {old / new:4.1f}x")

    decode = [fitting.error(r) for r in held if r.metric == "decode"]
    prefill = [abs(fitting.error(r)) for r in held if r.metric == "prefill"]
    outside = [r.id for r in held if r.metric == "decode" and abs(fitting.error(r)) > DECODE_WORST]
    checks = [
        (f"decode median |error| <= {DECODE_MEDIAN:.0%}",
         statistics.median(abs(e) for e in decode) <= DECODE_MEDIAN),
        (f"every decode row within +-{DECODE_WORST:.0%}" +
         (f" (outside: {', '.join(outside)})" if outside else ""), not outside),
        (f"prefill median |error| <= {PREFILL_MEDIAN:.0%}",
         statistics.median(prefill) <= PREFILL_MEDIAN),
    ]
    print("\ntargets on held-out rows:")
    for text, ok in checks:
        print(f"  [{'met' if ok else 'MISSED'}] {text}")
    print("\nconstants: " + ", ".join(f"{f.name}={getattr(CONSTANTS, f.name):g}"
                                       for f in fields(CONSTANTS)))
    return 0 if all(ok for _, ok in checks) else 1


if __name__ == "__main__":
    raise SystemExit(main())
