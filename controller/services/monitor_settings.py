"""Monitoring settings kept in the database (``monitor_setting``): grid carbon intensity per
fleet, group or label; SLO limits per group (or fleet-wide); how long telemetry is kept.

A device's value is the most specific one set: a label of the device, then its group, then the
fleet, then the default.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlmodel import Session, col, select

from controller.adapters.tables import Device, MonitorSetting
from controller.errors import UsageError
from controller.services.context import Fleet

# World average carbon intensity of electricity generation, 2019: 475 gCO2/kWh (IEA, Global
# Energy & CO2 Status Report 2019; the default of carbontracker). Set your grid's own figure:
# `fleet carbon set G_PER_KWH [--group G | --label k=v]`.
DEFAULT_GRID_G_PER_KWH = 475.0
GRID = "grid_g_per_kwh"
SLO_P95_TTFT = "slo_p95_ttft_ms"
SLO_MIN_TPS = "slo_min_tps"
RETENTION = {"raw_days": 7.0, "minute_days": 90.0, "hour_days": 730.0}
KEYS = {GRID, SLO_P95_TTFT, SLO_MIN_TPS, *RETENTION}


def scope_of(group: str | None, label: str | None) -> str:
    if group and label:
        raise UsageError("give --group or --label, not both", hint="e.g. --group kiosks")
    if label:
        key, sep, value = label.partition("=")
        if not sep or not key.strip():
            raise UsageError(f"label {label!r} is not key=value", hint="e.g. --label site=berlin")
        return f"label:{key.strip()}={value.strip()}"
    return f"group:{group}" if group else "fleet"


@dataclass(frozen=True)
class Settings:
    values: dict[tuple[str, str], float]  # (scope, key) -> value

    def for_device(self, device: Device, key: str) -> tuple[float | None, str]:
        """(value, the scope it came from) for this device, most specific first: its labels,
        then its groups (by name), then the fleet."""
        for scope in [f"label:{k}={v}" for k, v in sorted(device.labels.items())] + [
                f"group:{g}" for g in sorted(device.group_names)] + ["fleet"]:
            if (scope, key) in self.values:
                return self.values[(scope, key)], scope
        return None, ""

    def grid(self, device: Device) -> tuple[float, str]:
        value, scope = self.for_device(device, GRID)
        return (value, scope) if value is not None else (DEFAULT_GRID_G_PER_KWH, "default")

    def retention(self) -> dict[str, float]:
        return {k: self.values.get(("fleet", k), v) for k, v in RETENTION.items()}


def load(fleet: Fleet) -> Settings:
    with Session(fleet.inventory.engine) as s:
        rows = s.exec(select(MonitorSetting)).all()
    return Settings({(r.scope, r.key): r.value for r in rows})


def put(fleet: Fleet, scope: str, values: dict[str, float | None]) -> None:
    """Set (a number) or clear (None) each key in one scope, all or nothing."""
    for key, value in values.items():
        if key not in KEYS:
            raise UsageError(f"unknown setting {key!r}")
        if value is not None and value <= 0:
            raise UsageError(f"{key.replace('_', ' ')} must be greater than 0",
                             hint="to remove a limit, use clear")
    with Session(fleet.inventory.engine) as s:
        for key, value in values.items():
            row = s.get(MonitorSetting, (scope, key))
            if value is None:
                if row is not None:
                    s.delete(row)
            elif row is None:
                s.add(MonitorSetting(scope=scope, key=key, value=value))
            else:
                row.value = value
                s.add(row)
        s.commit()


def listing(fleet: Fleet, keys: set[str]) -> list[MonitorSetting]:
    with Session(fleet.inventory.engine) as s:
        return list(s.exec(select(MonitorSetting).where(col(MonitorSetting.key).in_(keys))
                           .order_by(col(MonitorSetting.scope), col(MonitorSetting.key))).all())
