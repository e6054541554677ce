"""Tables docs/selection.md shows, generated from the code so they cannot go stale: the
default pick for every real profile and catalog model, and the prediction error on the
published held-out measurements. ``python -m controller.services.selection_doc --write``
rewrites them; tests/unit/test_selection_doc.py fails when the doc and the code disagree.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

from controller.adapters.data_files import load_catalog, load_profiles
from controller.adapters.published import load_rows
from controller.core import fitting
from controller.core.select import Request, choose

ROOT = Path(__file__).resolve().parent.parent.parent
DOC = ROOT / "docs" / "selection.md"
DATA = ROOT / "tests" / "data" / "published"
SECTIONS = ("default-picks", "prediction-error")


def default_picks() -> str:
    """Per catalog model (built-in test models aside), every real profile's default pick at
    the model's default context, its predicted speed and the rule that chose it."""
    profiles = sorted((p for p in load_profiles().values() if p.kind == "device"),
                      key=lambda p: p.name)
    out = []
    for model in sorted(load_catalog().values(), key=lambda m: m.name):
        if model.builder:
            continue
        out.append(f"\n**{model.name}** (ctx {model.default_ctx})\n")
        out.append("| profile | default pick | tok/s | why |")
        out.append("|---|---|---:|---|")
        for p in profiles:
            choice = choose(model, p, Request(ctx=model.default_ctx))
            if choice.chosen is None:
                why = choice.reason.split(": ", 1)[0] if choice.reason.startswith(
                    "nothing fits") else choice.reason
                out.append(f"| {p.name} | - | - | {why} |")
                continue
            c = choice.chosen
            rule = choice.reason.split(": ", 1)[1].rsplit(" that fits", 1)[0]
            out.append(f"| {p.name} | {c.variant.name} | {c.tokens_per_s:.1f} | {rule} |")
    return "\n".join(out).strip("\n")


def prediction_error() -> str:
    rows = load_rows(DATA / "measurements.csv", DATA / "models")
    held = [r for r in rows if r.split == "holdout"]
    out = [f"Held-out rows: {len(held)} of {len(rows)} (constants fitted on the other "
           f"{len(rows) - len(held)}).\n",
           "| device class | metric | rows | median \\|error\\| | worst |",
           "|---|---|---:|---:|---:|"]
    for ce in fitting.error_table(rows):
        out.append(f"| {ce.device_class} | {ce.metric} | {ce.rows} | {ce.median_abs:.1%} | "
                   f"{ce.worst:+.1%} |")
    return "\n".join(out)


def generated() -> dict[str, str]:
    return {"default-picks": default_picks(), "prediction-error": prediction_error()}


def _pattern(name: str) -> re.Pattern[str]:
    return re.compile(rf"(<!-- {name}:start -->\n)(.*?)\n?(<!-- {name}:end -->)", re.S)


def current(text: str) -> dict[str, str]:
    out = {}
    for name in SECTIONS:
        m = _pattern(name).search(text)
        out[name] = m.group(2) if m else ""
    return out


def rewrite(text: str, tables: dict[str, str]) -> str:
    for name, body in tables.items():
        m = _pattern(name).search(text)
        if m:
            text = text[:m.start()] + m.group(1) + body + "\n" + m.group(3) + text[m.end():]
    return text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--write", action="store_true", help="rewrite docs/selection.md")
    args = parser.parse_args(argv)
    tables = generated()
    if args.write:
        DOC.write_text(rewrite(DOC.read_text(), tables))
        return 0
    stale = [n for n, body in current(DOC.read_text()).items() if body != tables[n]]
    if stale:
        print(f"docs/selection.md is stale ({', '.join(stale)}); run "
              "python -m controller.services.selection_doc --write", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
