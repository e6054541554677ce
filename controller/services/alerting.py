"""`fleet alerts` and the dashboard's badges: gather each device's facts from the database
and apply the rules of ``controller.core.alerts``."""

from __future__ import annotations

import time

from controller.adapters.tables import Device
from controller.adapters.telemetry_read import SqlTelemetryReader
from controller.core.alerts import CRASH_WINDOW_S, GAP_WINDOW_S, Alert, DeviceFacts, Gap, evaluate
from controller.services import monitor_settings, telemetry_query
from controller.services.context import Fleet

WINDOW_S = 900.0  # SLOs and predictions are judged over the last 15 minutes


def facts(fleet: Fleet, devices: list[Device], now: float | None = None) -> list[DeviceFacts]:
    now = time.time() if now is None else now
    names = [d.name for d in devices]
    reader = SqlTelemetryReader(fleet.inventory.engine)
    live = reader.live(names)
    crashes = reader.crashes_since(names, now - CRASH_WINDOW_S)
    gaps: dict[str, list[Gap]] = {}
    for g in reader.gaps(names, now - GAP_WINDOW_S):
        gaps.setdefault(g.device, []).append(Gap(g.kind, g.start_ts, g.end_ts, g.lost,
                                                 g.detail))
    recent = {r.key["device"]: r for r in telemetry_query.report(
        fleet, devices, WINDOW_S, "device", now=now, rollups=True).rows}
    settings = monitor_settings.load(fleet)
    out = []
    for d in devices:
        row = live.get(d.name)
        if row is None:
            continue  # never collected: nothing known to alert on
        ttft_slo, scope = settings.for_device(d, monitor_settings.SLO_P95_TTFT)
        tps_slo, tps_scope = settings.for_device(d, monitor_settings.SLO_MIN_TPS)
        r = recent.get(d.name)
        out.append(DeviceFacts(
            device=d.name, group=",".join(d.group_names), state=row.state, reachable=row.reachable,
            last_ok=row.last_ok_ts, last_error=row.last_error,
            crashes_recent=crashes.get(d.name, 0), throttled=bool(row.throttled),
            throttle_reasons=row.throttle_reasons, gaps=tuple(gaps.get(d.name, [])),
            requests_recent=r.requests if r else 0, ttft_p95_ms=r.ttft_p95 if r else None,
            tps_p50=r.tps_p50 if r else None, slo_p95_ttft_ms=ttft_slo,
            slo_min_tps=tps_slo, slo_scope=scope or tps_scope,
            tps_off=r.tps_off if r else None, drift=row.last_error))
    return out


def alerts(fleet: Fleet, devices: list[Device], now: float | None = None) -> list[Alert]:
    return evaluate(facts(fleet, devices, now))
