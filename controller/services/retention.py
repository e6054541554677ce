"""Retention: raw request records and samples for ``raw_days`` (default 7), then per-minute
rollups for ``minute_days`` (90), then per-hour ones for ``hour_days`` (730). Rollups are
written as records arrive (late records too), so pruning only deletes."""

from __future__ import annotations

import time

from controller.adapters.telemetry_db import SqlTelemetry
from controller.services import monitor_settings
from controller.services.context import Fleet


def prune(fleet: Fleet, now: float | None = None) -> dict[str, int]:
    keep = monitor_settings.load(fleet).retention()
    return SqlTelemetry(fleet.inventory.engine).prune(
        time.time() if now is None else now, keep["raw_days"], keep["minute_days"],
        keep["hour_days"])
