"""Rollout summaries from the log (no database: rows built in memory)."""

from __future__ import annotations

from controller.adapters.tables import Deployment
from controller.services.history import summarize


def _row(rollout: str, device: str, status: str) -> Deployment:
    return Deployment(rollout=rollout, device=device, model="m", variant="q4", sha256="",
                      status=status)


def test_rows_group_by_rollout_newest_first() -> None:
    rows = [_row("b", "d1", "halted"), _row("b", "d2", "failed"), _row("b", "d3", "halted"),
            _row("a", "d1", "active"), _row("a", "d2", "active")]
    summaries = summarize(rows)
    assert [s.rollout for s in summaries] == ["b", "a"]
    assert summaries[0].counts == {"halted": 2, "failed": 1}
    assert summaries[1].counts == {"active": 2}
