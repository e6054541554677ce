"""SqlTelemetryReader: the rows the telemetry queries, alerts and the dashboard read."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from controller.adapters.telemetry_db import (
    GAP,
    LIVE,
    MODEL,
    REQ,
    REQ_ROLL,
    SAMPLE,
    SAMPLE_ROLL,
)

CHUNK = 500


def _parts(names: Sequence[str]) -> Iterable[Sequence[str]]:
    for i in range(0, len(names), CHUNK):
        yield names[i : i + CHUNK]


class SqlTelemetryReader:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def _rows(self, query_of: Any, devices: Sequence[str]) -> list[Any]:
        out: list[Any] = []
        with self.engine.connect() as conn:
            for part in _parts(devices):
                out += list(conn.execute(query_of(part)))
        return out

    def models(self) -> dict[int, tuple[str, str, str]]:
        """id -> (sha256, model, variant)."""
        with self.engine.connect() as conn:
            return {r.id: (r.sha256, r.model, r.variant) for r in conn.execute(sa.select(MODEL))}

    def requests(self, devices: Sequence[str], since: float, until: float) -> list[Any]:
        return self._rows(lambda part: sa.select(REQ).where(
            REQ.c.device.in_(part), REQ.c.ts >= since, REQ.c.ts < until), devices)

    def samples(self, devices: Sequence[str], since: float, until: float) -> list[Any]:
        return self._rows(lambda part: sa.select(SAMPLE).where(
            SAMPLE.c.device.in_(part), SAMPLE.c.ts >= since, SAMPLE.c.ts < until), devices)

    def request_rollups(self, devices: Sequence[str], period: int, since: float,
                        until: float) -> list[Any]:
        return self._rows(lambda part: sa.select(REQ_ROLL).where(
            REQ_ROLL.c.period_s == period, REQ_ROLL.c.device.in_(part),
            REQ_ROLL.c.bucket >= since, REQ_ROLL.c.bucket < until), devices)

    def sample_rollups(self, devices: Sequence[str], period: int, since: float,
                       until: float) -> list[Any]:
        return self._rows(lambda part: sa.select(SAMPLE_ROLL).where(
            SAMPLE_ROLL.c.period_s == period, SAMPLE_ROLL.c.device.in_(part),
            SAMPLE_ROLL.c.bucket >= since, SAMPLE_ROLL.c.bucket < until), devices)

    def live(self, devices: Sequence[str]) -> dict[str, Any]:
        return {r.device: r for r in self._rows(
            lambda part: sa.select(LIVE).where(LIVE.c.device.in_(part)), devices)}

    def gaps(self, devices: Sequence[str], since: float) -> list[Any]:
        return self._rows(lambda part: sa.select(GAP).where(
            GAP.c.device.in_(part),
            sa.or_(GAP.c.end_ts.is_(None), GAP.c.end_ts >= since)).order_by(GAP.c.id), devices)

    def recent_requests(self, device: str, limit: int) -> list[Any]:
        with self.engine.connect() as conn:
            return list(conn.execute(sa.select(REQ).where(REQ.c.device == device)
                                     .order_by(REQ.c.ts.desc()).limit(limit)))

    def crashes_since(self, devices: Sequence[str], since: float) -> dict[str, int]:
        """Worker crashes per device since ``since`` from its kept samples (the agent's count
        restarts with the agent: a drop counts as a restart, not negative crashes)."""
        out: dict[str, int] = {}
        rows = self._rows(lambda part: sa.select(SAMPLE.c.device, SAMPLE.c.ts,
                                                  SAMPLE.c.worker_crashes).where(
            SAMPLE.c.device.in_(part), SAMPLE.c.ts >= since).order_by(SAMPLE.c.device,
                                                                       SAMPLE.c.ts), devices)
        last: dict[str, int] = {}
        for r in rows:
            prev = last.get(r.device)
            if prev is not None and r.worker_crashes != prev:
                out[r.device] = out.get(r.device, 0) + (
                    r.worker_crashes - prev if r.worker_crashes > prev else r.worker_crashes)
            last[r.device] = r.worker_crashes
        return out
