"""The fitted constants come from the fit rows, and only from them.

``fit`` is re-run on the published set: it must reproduce the shipped constants exactly
(they are its rounded output), and changing or dropping held-out rows must not move it.
Per-class decode bandwidths in profiles must each cite a fit row and equal what that row
implies.
"""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path

import pytest

from controller.adapters.data_files import load_profiles
from controller.adapters.published import load_rows
from controller.core import fitting
from controller.core.cost_constants import CONSTANTS, FITTED
from controller.core.fitting import PublishedRow

DATA = Path(__file__).resolve().parent.parent / "data" / "published"


@pytest.fixture(scope="module")
def rows() -> list[PublishedRow]:
    return load_rows(DATA / "measurements.csv", DATA / "models")


@pytest.fixture(scope="module")
def fitted(rows: list[PublishedRow]) -> fitting.CostConstants:
    return fitting.fit(rows)


def test_shipped_constants_are_the_fit(fitted: fitting.CostConstants) -> None:
    diffs = {n: (getattr(CONSTANTS, n), getattr(fitted, n)) for n in FITTED
             if getattr(CONSTANTS, n) != getattr(fitted, n)}
    assert not diffs, f"refit with bench/prediction_error.py --fit: {diffs}"


def test_held_out_rows_cannot_move_the_fit(rows: list[PublishedRow],
                                           fitted: fitting.CostConstants) -> None:
    poisoned = [replace(r, measured=r.measured * 7.0) if r.split == "holdout" else r
                for r in rows]
    assert fitting.fit(poisoned) == fitted
    assert fitting.fit([r for r in rows if r.split == "fit"]) == fitted


def test_fit_rows_are_few_and_every_class_keeps_held_out_rows(rows: list[PublishedRow]) -> None:
    train = [r for r in rows if r.split == "fit"]
    assert len(train) <= len(rows) // 3
    for cls in {r.device_class for r in rows}:
        assert any(r.split == "holdout" for r in rows if r.device_class == cls), cls


def test_class_decode_bandwidths_come_from_cited_fit_rows(rows: list[PublishedRow]) -> None:
    by_id = {r.id: r for r in rows}
    calibrated = [p for p in load_profiles().values() if p.decode_bandwidth_gbps > 0]
    assert calibrated
    for profile in calibrated:
        cited = [m for s in profile.sources for m in re.findall(r"row ([\w.-]+) of tests/", s)]
        assert len(cited) == 1, profile.name
        row = by_id[cited[0]]
        assert row.split == "fit" and row.backend == "cpu", (profile.name, row.id)
        assert profile.decode_bandwidth_gbps == pytest.approx(fitting.class_bandwidth(row),
                                                              rel=0.01), profile.name
