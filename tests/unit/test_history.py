"""How a persisted rollout reads: a ``running`` rollout whose driver stopped beating is
``interrupted``."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from controller.services.history import status_of
from controller.services.ports import Rollout
from controller.services.rollout_runner import stale_after_s

NOW = datetime(2026, 11, 29, 12, 0, tzinfo=timezone.utc)


def _rollout(status: str, beat_s_ago: float | None) -> Rollout:
    beat = None if beat_s_ago is None else NOW - timedelta(seconds=beat_s_ago)
    return Rollout("r", "m", status, {}, [1], heartbeat_at=beat)


def test_a_running_rollout_without_a_recent_heartbeat_reads_interrupted() -> None:
    assert status_of(_rollout("running", 1), NOW) == "running"
    assert status_of(_rollout("running", stale_after_s() + 1), NOW) == "interrupted"
    assert status_of(_rollout("running", None), NOW) == "interrupted"
    assert status_of(_rollout("paused", 10_000), NOW) == "paused"
    assert status_of(_rollout("completed", 10_000), NOW) == "completed"
