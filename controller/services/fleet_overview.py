"""Read models of the dashboard: the fleet's summary strip and one device's detail, from the
database only (rollups where they answer the question: a refresh reads a few hundred rows
whatever the fleet's size)."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from controller.adapters.device_models_db import SqlDeviceModels
from controller.adapters.tables import Device, RolloutDevice
from controller.adapters.telemetry_db import LIVE, REQ, REQ_ROLL, SAMPLE_ROLL
from controller.adapters.telemetry_read import SqlTelemetryReader
from controller.core.device_models import DeviceModel
from controller.core.sketch import Sketch
from controller.core.telemetry import HOUR, MINUTE, ratio_off
from controller.services import monitor_settings, predictions
from controller.services.context import Fleet

P95_WINDOW_S = 300.0


@dataclass(frozen=True)
class FleetOverview:
    states: dict[str, int]
    requests_per_min: float  # over the last 5 minutes
    p95_ttft_ms: float | None  # over the last 5 minutes (merged minute sketches)
    power_w: dict[str, float]  # meter -> watts now, summed over reachable devices
    joules_per_token: dict[str, float]  # meter -> this hour and the one before
    gco2e_today: dict[str, float]  # meter -> since local midnight


def _midnight(now: float) -> float:
    t = time.localtime(now)
    return time.mktime((t.tm_year, t.tm_mon, t.tm_mday, 0, 0, 0, 0, 0, -1))


def overview(fleet: Fleet, devices: list[Device], states: dict[str, int],
             now: float | None = None) -> FleetOverview:
    now = time.time() if now is None else now
    settings = monitor_settings.load(fleet)
    by_name = {d.name: d for d in devices}
    with fleet.inventory.engine.connect() as conn:
        recent = conn.execute(sa.select(sa.func.count()).select_from(REQ)
                              .where(REQ.c.ts >= now - 300)).scalar() or 0
        sketch = Sketch()
        for r in conn.execute(sa.select(REQ_ROLL.c.ttft_sketch).where(
                REQ_ROLL.c.period_s == MINUTE, REQ_ROLL.c.bucket >= now - P95_WINDOW_S)):
            sketch.merge(Sketch.decode(r.ttft_sketch))
        jpt: dict[str, list[float]] = {}
        for r in conn.execute(sa.select(REQ_ROLL.c.meter, sa.func.sum(REQ_ROLL.c.energy_j),
                                        sa.func.sum(REQ_ROLL.c.completion_tokens)).where(
                REQ_ROLL.c.period_s == HOUR, REQ_ROLL.c.bucket >= (now // HOUR - 1) * HOUR,
                REQ_ROLL.c.energy_j > 0).group_by(REQ_ROLL.c.meter)):
            jpt[r[0]] = [float(r[1] or 0.0), float(r[2] or 0.0)]
        power: dict[str, float] = {}
        for r in conn.execute(sa.select(LIVE.c.energy_meter, sa.func.sum(LIVE.c.power_w))
                              .where(LIVE.c.reachable.is_(True), LIVE.c.power_w.is_not(None))
                              .group_by(LIVE.c.energy_meter)):
            power[r[0] or "none"] = float(r[1] or 0.0)
        co2: dict[str, float] = {}
        for r in conn.execute(sa.select(SAMPLE_ROLL.c.device, SAMPLE_ROLL.c.meter,
                                        sa.func.sum(SAMPLE_ROLL.c.energy_j)).where(
                SAMPLE_ROLL.c.period_s == HOUR, SAMPLE_ROLL.c.bucket >= _midnight(now) - HOUR
                + 1).group_by(SAMPLE_ROLL.c.device, SAMPLE_ROLL.c.meter)):
            device = by_name.get(r[0])
            grid = settings.grid(device)[0] if device else monitor_settings.DEFAULT_GRID_G_PER_KWH
            co2[r[1]] = co2.get(r[1], 0.0) + float(r[2] or 0.0) / 3.6e6 * grid
    return FleetOverview(states, recent / 5.0, sketch.quantile(0.95), power,
                         {m: j / t for m, (j, t) in jpt.items() if t}, co2)


@dataclass(frozen=True)
class RequestLine:
    ts: float
    variant: str
    outcome: str
    ttft_ms: float
    decode_tps: float
    tokens: int
    joules: float
    meter: str


@dataclass
class DeviceDetail:
    device: Device
    live: Any  # the device_live row, or None before the first contact
    minutes: list[float]  # bucket starts of the series below (the last hour)
    ttft_p50: list[float] = field(default_factory=list)
    tps_p50: list[float] = field(default_factory=list)
    power_w: list[float] = field(default_factory=list)
    temp_c: list[float] = field(default_factory=list)
    recent: list[RequestLine] = field(default_factory=list)
    hardware: dict[str, str] = field(default_factory=dict)
    predicted_tps: float | None = None
    predicted_ttft_ms: float | None = None
    measured_tps: float | None = None
    measured_ttft_ms: float | None = None
    prediction_source: str = ""
    last_rollout: RolloutDevice | None = None
    models: list[DeviceModel] = field(default_factory=list)  # every active model it runs

    @property
    def tps_off(self) -> float | None:
        return ratio_off(self.measured_tps, self.predicted_tps)


def _hardware(device: Device) -> dict[str, str]:
    try:
        probed = json.loads(device.probed_json) if device.probed_json else {}
    except ValueError:
        probed = {}
    out = {"profile": device.profile or str(probed.get("profile", "")) or "-",
           "address": f"{device.host}:{device.agent_port}"}
    if probed:
        gib = int(probed.get("ramTotalBytes", 0)) / 2**30
        out.update(cpu=f"{probed.get('cpuModel', '?')} x{probed.get('cores', '?')}",
                   ram=f"{gib:.1f} GiB", arch=str(probed.get("arch", "")),
                   agent=str(probed.get("agentVersion", "")))
    return out


def device_detail(fleet: Fleet, name: str, now: float | None = None) -> DeviceDetail:
    now = time.time() if now is None else now
    device = fleet.inventory.get_device(name)
    reader = SqlTelemetryReader(fleet.inventory.engine)
    start = (now // MINUTE) * MINUTE - 59 * MINUTE
    minutes = [start + i * MINUTE for i in range(60)]
    detail = DeviceDetail(device, reader.live([name]).get(name), minutes)
    ttft: dict[float, Sketch] = {}
    tps: dict[float, Sketch] = {}
    for r in reader.request_rollups([name], MINUTE, start, now + 1):
        ttft.setdefault(r.bucket, Sketch()).merge(Sketch.decode(r.ttft_sketch))
        tps.setdefault(r.bucket, Sketch()).merge(Sketch.decode(r.tps_sketch))
    power: dict[float, list[float]] = {}
    temp: dict[float, float] = {}
    for s in reader.sample_rollups([name], MINUTE, start, now + 1):
        acc = power.setdefault(s.bucket, [0.0, 0.0])
        acc[0] += s.energy_j
        acc[1] += s.seconds
        if s.max_temp_c is not None:
            temp[s.bucket] = max(temp.get(s.bucket, s.max_temp_c), s.max_temp_c)
    detail.ttft_p50 = [ttft[m].quantile(0.5) or 0.0 if m in ttft else 0.0 for m in minutes]
    detail.tps_p50 = [tps[m].quantile(0.5) or 0.0 if m in tps else 0.0 for m in minutes]
    detail.power_w = [power[m][0] / power[m][1] if m in power and power[m][1] else 0.0
                      for m in minutes]
    detail.temp_c = [temp.get(m, 0.0) for m in minutes]
    models = reader.models()
    detail.recent = [RequestLine(r.ts, models.get(r.model_id, ("", "", "?"))[2], r.outcome,
                                 r.ttft_ms, r.decode_tps, r.completion_tokens, r.energy_j,
                                 r.meter) for r in reader.recent_requests(name, 12)]
    detail.hardware = _hardware(device)
    detail.models = SqlDeviceModels(fleet.inventory.engine).of([name]).get(name, [])
    live = detail.live
    if live is not None and live.active_model:
        found = predictions.lookup(fleet, {name: device},
                                   {(name, live.active_model, live.active_variant)})
        pred = found.get((name, live.active_model, live.active_variant))
        if pred is not None:
            detail.predicted_tps = pred.tokens_per_s or None
            detail.predicted_ttft_ms = pred.ttft_ms or None
            detail.prediction_source = pred.source
        all_tps = Sketch()
        all_ttft = Sketch()
        for r in reader.request_rollups([name], MINUTE, start, now + 1):
            if models.get(r.model_id, ("",))[0] == live.active_sha256:
                all_tps.merge(Sketch.decode(r.tps_sketch))
                all_ttft.merge(Sketch.decode(r.ttft_sketch))
        detail.measured_tps = all_tps.quantile(0.5)
        detail.measured_ttft_ms = all_ttft.quantile(0.5)
    with fleet.inventory.session() as s:
        from sqlmodel import col, select

        detail.last_rollout = s.exec(select(RolloutDevice).where(RolloutDevice.device == name)
                                     .order_by(col(RolloutDevice.updated_at).desc())).first()
    return detail


def ago(ts: float | None, now: float | None = None) -> str:
    """How long ago, at minute granularity (a screen that refreshes every few seconds must
    not flicker): <1m, 12m, 3h, 2d."""
    if ts is None:
        return "never"
    seconds = (time.time() if now is None else now) - ts
    if seconds < 60:
        return "<1m"
    if seconds < 3600:
        return f"{seconds // 60:.0f}m"
    return f"{seconds // 3600:.0f}h" if seconds < 172800 else f"{seconds // 86400:.0f}d"


def when(ts: float | None) -> str:
    return "-" if ts is None else datetime.fromtimestamp(ts).strftime("%H:%M:%S")
