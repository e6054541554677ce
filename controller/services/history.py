"""`fleet rollouts`: the log of past rollouts, one row per device and outcome."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from controller.adapters.tables import Deployment
from controller.errors import UsageError
from controller.services.context import Fleet

SCAN_ROWS = 10_000  # how far back the list of rollouts looks


@dataclass
class RolloutSummary:
    rollout: str
    model: str
    finished_at: datetime | None
    counts: dict[str, int] = field(default_factory=dict)  # outcome -> devices


def summarize(rows: list[Deployment]) -> list[RolloutSummary]:
    """Rows (newest first) grouped by rollout, newest rollout first."""
    by_id: dict[str, RolloutSummary] = {}
    for row in rows:
        summary = by_id.setdefault(row.rollout,
                                   RolloutSummary(row.rollout, row.model, row.finished_at))
        summary.counts[row.status] = summary.counts.get(row.status, 0) + 1
    return list(by_id.values())


def recent(fleet: Fleet, limit: int) -> list[RolloutSummary]:
    if limit < 1:
        raise UsageError("--limit must be 1 or more", hint="e.g. --limit 10")
    return summarize(fleet.inventory.deployments(SCAN_ROWS))[:limit]


def devices_of(fleet: Fleet, rollout: str) -> list[Deployment]:
    """The rows of one rollout, named by its id or an unambiguous prefix of it."""
    rows = fleet.inventory.deployments(SCAN_ROWS, rollout=rollout)
    ids = {r.rollout for r in rows}
    if not ids:
        raise UsageError(f"no rollout {rollout!r}", hint="`fleet rollouts` lists them")
    if len(ids) > 1:
        raise UsageError(f"{rollout!r} names {len(ids)} rollouts",
                         hint="give more characters of the id")
    return sorted(rows, key=lambda r: r.device)
