"""`fleet rollouts`: the log of past rollouts, one row per device and outcome."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone

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


# -- the rollout read model (the dashboard's rollout view) ----------------------------------
# The dashboard reads rollouts only through RolloutView / DeviceStep and the two functions
# below. Today they are built from the `deployment` log (one row per device when it finishes)
# and the plan's predictions (one row per device when the rollout starts, if the deploy
# records them: controller.services.predictions.record_plan). When rollouts become a persisted
# state machine with per-device step rows, only these functions change.

STAGE_OF_STATUS = {"active": "committed", "rolled-back": "rolled back", "failed": "failed",
                   "halted": "halted", "skipped": "skipped", "unchanged": "unchanged",
                   "staged": "staged"}
RUNNING_FOR_S = 3600.0  # a planned device with no outcome this long after is shown as unknown


@dataclass(frozen=True)
class DeviceStep:
    device: str
    stage: str  # planned | uploading | loading | health check | committed | rolled back | ...
    progress: float | None  # 0..1 within the stage when known (an upload), else None
    reason: str
    variant: str
    updated_at: datetime | None


@dataclass(frozen=True)
class RolloutView:
    rollout: str
    model: str
    started_at: datetime | None
    finished_at: datetime | None
    running: bool
    steps: list[DeviceStep]

    @property
    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for s in self.steps:
            out[s.stage] = out.get(s.stage, 0) + 1
        return out


def _views(rows: list[Deployment], planned: list[tuple[str, str, str, str, datetime]],
           now: datetime) -> list[RolloutView]:
    by_id: dict[str, dict[str, DeviceStep]] = {}
    meta: dict[str, tuple[str, datetime | None, datetime | None]] = {}
    for rollout, device, model, variant, created in planned:
        by_id.setdefault(rollout, {})[device] = DeviceStep(device, "planned", None, "",
                                                           variant, created)
        meta[rollout] = (model, created, None)
    for row in sorted(rows, key=lambda r: r.id or 0):
        steps = by_id.setdefault(row.rollout, {})
        steps[row.device] = DeviceStep(row.device, STAGE_OF_STATUS.get(row.status, row.status),
                                       1.0, row.reason, row.variant, row.finished_at)
        model, started, finished = meta.get(row.rollout, (row.model, row.started_at, None))
        if started is None or (row.started_at and row.started_at < started):
            started = row.started_at
        if row.finished_at and (finished is None or row.finished_at > finished):
            finished = row.finished_at
        meta[row.rollout] = (model, started, finished)
    views = []
    for rollout, steps in by_id.items():
        model, started, finished = meta[rollout]
        fresh = started is not None and (now - _aware(started)).total_seconds() < RUNNING_FOR_S
        running = fresh and any(s.stage == "planned" for s in steps.values())
        views.append(RolloutView(rollout, model, started, None if running else finished,
                                 running, sorted(steps.values(), key=lambda s: s.device)))
    return sorted(views, key=lambda v: _aware(v.started_at or v.finished_at or now),
                  reverse=True)


def _aware(when: datetime) -> datetime:
    return when if when.tzinfo else when.replace(tzinfo=timezone.utc)


VIEW_ROWS = 2000  # how far back the rollout view looks (a dashboard refresh reads these)


def rollout_views(fleet: Fleet, limit: int = 5) -> list[RolloutView]:
    """The newest rollouts, each device at its latest stage."""
    from sqlmodel import Session, col, select

    from controller.adapters.tables import PlanPrediction

    rows = fleet.inventory.deployments(VIEW_ROWS)
    with Session(fleet.inventory.engine) as s:
        planned = [(p.rollout, p.device, p.model, p.variant, p.created_at) for p in s.exec(
            select(PlanPrediction).where(PlanPrediction.rollout != "")
            .order_by(col(PlanPrediction.id).desc()).limit(VIEW_ROWS)).all()]
    return _views(rows, planned, datetime.now(timezone.utc))[:limit]
