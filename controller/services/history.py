"""`fleet rollouts`, `fleet rollouts show`: the persisted rollouts, read as they run.

What readers (the CLI, the dashboard) get are the dataclasses below, never table rows. A
rollout recorded as ``running`` whose driver stopped sending heartbeats (a killed controller)
reads as ``interrupted``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime

from controller.adapters.rollout_repo import EventView, SqlRolloutLog, utc
from controller.errors import UsageError
from controller.liveness import driver_alive
from controller.services.context import Fleet
from controller.services.ports import Rollout


@dataclass
class RolloutSummary:
    rollout: str
    model: str
    status: str
    created_at: datetime | None
    finished_at: datetime | None
    reason: str = ""
    counts: dict[str, int] = field(default_factory=dict)  # step -> devices


@dataclass(frozen=True)
class DeviceRow:
    device: str
    wave: int
    step: str
    variant: str
    sha256: str
    reason: str
    hint: str
    bytes_sent: int
    size_bytes: int
    model_failed: bool
    choice: str
    predicted: dict[str, float]
    updated_at: datetime | None
    site: str = ""  # where its bytes came from: bytes_sent from the controller, these from
    peer_bytes: dict[str, int] = field(default_factory=dict)  # its site's peers


@dataclass(frozen=True)
class RolloutDetail:
    summary: RolloutSummary
    waves: list[int]
    wave: int
    controller: str
    policy: dict[str, object]
    devices: list[DeviceRow]
    events: list[EventView]


def status_of(rollout: Rollout, now: datetime | None = None) -> str:
    if rollout.status == "running" and not driver_alive(rollout.controller,
                                                        rollout.heartbeat_at, now):
        return "interrupted"
    return rollout.status


def recent(fleet: Fleet, limit: int) -> list[RolloutSummary]:
    if limit < 1:
        raise UsageError("--limit must be 1 or more", hint="e.g. --limit 10")
    log = SqlRolloutLog(fleet.inventory)
    return [RolloutSummary(r.id, r.model, status_of(r), r.created_at, r.finished_at, r.reason,
                           counts) for r, counts in log.recent(limit)]


def show(fleet: Fleet, prefix: str, events: bool = False) -> RolloutDetail:
    """One rollout, named by its id or an unambiguous prefix of it."""
    log = SqlRolloutLog(fleet.inventory)
    rollout_id = log.resolve(prefix)
    rollout, _ = log.load(rollout_id)
    rows = log.devices(rollout_id)
    counts: dict[str, int] = {}
    for r in rows:
        counts[r.step] = counts.get(r.step, 0) + 1
    summary = RolloutSummary(rollout.id, rollout.model, status_of(rollout), rollout.created_at,
                             rollout.finished_at, rollout.reason, counts)
    devices = [DeviceRow(r.device, r.wave, r.step, r.variant, r.sha256, r.reason, r.hint,
                          r.bytes_sent, r.size_bytes, r.model_failed, r.choice,
                          json.loads(r.predicted_json or "{}"), utc(r.updated_at), r.site,
                          json.loads(r.peer_bytes_json or "{}"))
               for r in rows]
    return RolloutDetail(summary, rollout.waves, rollout.wave, rollout.controller,
                         rollout.policy, devices, log.events(rollout_id) if events else [])


# -- the rollout view (the dashboard) --------------------------------------------------------
# The dashboard reads rollouts only through RolloutView / DeviceStep and rollout_views(); each
# device at the step the rollout log says, an upload with its live progress.


@dataclass(frozen=True)
class DeviceStep:
    device: str
    stage: str  # a controller.core.steps.Step value
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
    status: str = ""

    @property
    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for s in self.steps:
            out[s.stage] = out.get(s.stage, 0) + 1
        return out


def rollout_views(fleet: Fleet, limit: int = 5) -> list[RolloutView]:
    """The newest rollouts, each device at its current step."""
    log = SqlRolloutLog(fleet.inventory)
    views = []
    for rollout, _counts in log.recent(limit):
        status = status_of(rollout)
        steps = []
        for d in log.devices(rollout.id):
            progress = None
            if d.step == "uploading" and d.size_bytes:
                progress = min(1.0, d.progress_bytes / d.size_bytes)
            steps.append(DeviceStep(d.device, d.step, progress, d.reason, d.variant,
                                    utc(d.updated_at)))
        views.append(RolloutView(rollout.id, rollout.model, rollout.created_at,
                                 rollout.finished_at, status in ("running", "paused"),
                                 steps, status))
    return views
