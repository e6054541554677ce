"""SqlDeviceModels: the ``device_model`` table (controller.core.device_models), read by
`fleet status` and the dashboard, written by the collector (what each agent reports) and by
rollouts (what they committed or rolled back), each write replacing a device's whole set."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from datetime import datetime, timezone

import sqlalchemy as sa
from sqlalchemy import Connection, Engine

from controller.adapters.tables import DeviceModelRow
from controller.core.device_models import DeviceModel

TABLE = DeviceModelRow.__table__  # type: ignore[attr-defined]


def _when(ts: float) -> datetime | None:
    return datetime.fromtimestamp(ts, timezone.utc) if ts > 0 else None


def _row(device: str, m: DeviceModel, now: datetime) -> dict[str, object]:
    return {"device": device, "name": m.name, "variant": m.variant, "sha256": m.sha256,
            "aliases_json": json.dumps(sorted(m.aliases)), "pinned": m.pinned,
            "resident": m.resident, "on_trial": m.on_trial, "memory_bytes": m.memory_bytes,
            "last_used_at": _when(m.last_used_at), "updated_at": now, "adapter": m.adapter}


def _model(r: sa.Row[tuple[object, ...]]) -> DeviceModel:
    used = r.last_used_at
    if isinstance(used, datetime) and used.tzinfo is None:  # SQLite keeps no zone
        used = used.replace(tzinfo=timezone.utc)
    return DeviceModel(r.name, r.variant, r.sha256, tuple(json.loads(r.aliases_json or "[]")),
                       bool(r.pinned), bool(r.resident), bool(r.on_trial), int(r.memory_bytes),
                       used.timestamp() if isinstance(used, datetime) else 0.0, r.adapter or "")


def read(conn: Connection, devices: Sequence[str] | None = None
         ) -> dict[str, list[DeviceModel]]:
    """Each device's models, sorted by name (``None``: every device)."""
    query = sa.select(TABLE).order_by(TABLE.c.device, TABLE.c.name)
    if devices is not None:
        query = query.where(TABLE.c.device.in_(list(devices)))
    out: dict[str, list[DeviceModel]] = {}
    for r in conn.execute(query):
        out.setdefault(r.device, []).append(_model(r))
    return out


def write(conn: Connection, sets: Iterable[tuple[str, list[DeviceModel]]]) -> None:
    """Replace each device's set of models."""
    now = datetime.now(timezone.utc)
    sets = list(sets)
    if not sets:
        return
    conn.execute(TABLE.delete().where(TABLE.c.device.in_([d for d, _ in sets])))
    rows = [_row(device, m, now) for device, models in sets for m in models]
    if rows:
        conn.execute(TABLE.insert(), rows)


class SqlDeviceModels:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def of(self, devices: Sequence[str] | None = None) -> dict[str, list[DeviceModel]]:
        with self.engine.connect() as conn:
            return read(conn, devices)

    def store(self, sets: Iterable[tuple[str, list[DeviceModel]]]) -> None:
        with self.engine.begin() as conn:
            write(conn, sets)
