"""`fleet status` and `fleet generate`. Status reads the database the collector fills; unless a
`fleet monitor` keeps it fresh, it first runs a collection pass bounded by ``wait_s`` (devices
that do not answer in time are shown as last seen, never waited for)."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from controller.adapters.agent_client import GenerationResult
from controller.adapters.tables import Device, DeviceLive
from controller.core.telemetry import device_state
from controller.errors import FleetError
from controller.services.collecting import Collector
from controller.services.context import Fleet
from controller.services.monitoring import monitor_running

__all__ = ["DeviceStatus", "GenerateOutcome", "device_state", "generate", "refresh",
           "status"]

LIVE = DeviceLive.__table__  # type: ignore[attr-defined]


@dataclass(frozen=True)
class DeviceStatus:
    device: Device
    online: bool
    active_variant: str
    active_model: str
    requests: int
    last_ttft_ms: float | None
    last_latency_ms: float | None
    last_tokens_per_s: float | None
    worker_crashes: int
    error: str = ""
    power_w: float | None = None
    joules_per_token: float | None = None
    energy_meter: str = ""
    cpu_percent: float | None = None
    max_temp_c: float | None = None
    state: str = ""  # see core.telemetry.device_state; "unknown" before the first contact
    seen_ago_s: float | None = None  # since the last successful contact
    throttled: bool = False
    on_trial: bool = False
    previous_variant: str = ""


def refresh(fleet: Fleet, devices: list[Device], wait_s: float) -> bool:
    """Run a collection pass for at most ``wait_s`` unless a monitor keeps the database
    fresh; True when one ran."""
    if wait_s <= 0 or not devices or monitor_running(fleet):
        return False
    Collector(fleet, min(32, len(devices)), timeout_s=max(0.5, wait_s)).run_pass(
        devices, wait_s=wait_s)
    return True


def read(fleet: Fleet, devices: list[Device]) -> list[DeviceStatus]:
    """Each device as the database has it (the collector's last contact)."""
    names = [d.name for d in devices]
    live: dict[str, Any] = {}
    with fleet.inventory.engine.connect() as conn:
        for i in range(0, len(names), 500):
            query = sa.select(LIVE).where(LIVE.c.device.in_(names[i:i + 500]))
            live.update((r.device, r) for r in conn.execute(query))
    # the devices' own rows again: the collector updated their summary columns
    fresh = {d.name: d for d in fleet.inventory.list_devices()} if devices else {}
    now = time.time()
    out = []
    for d in devices:
        d = fresh.get(d.name, d)
        row = live.get(d.name)
        if row is None or row.last_attempt_ts is None:
            out.append(DeviceStatus(d, False, d.variant, d.model, 0, d.last_ttft_ms,
                                    d.last_latency_ms, d.last_tokens_per_s, 0,
                                    "not collected yet", state="unknown"))
            continue
        seen = None if row.last_ok_ts is None else now - row.last_ok_ts
        error = row.last_error if row.state in ("unreachable", "drifted") else ""
        out.append(DeviceStatus(
            device=d, online=bool(row.reachable),
            active_variant=row.active_variant, active_model=row.active_model,
            requests=row.requests_total, last_ttft_ms=d.last_ttft_ms,
            last_latency_ms=d.last_latency_ms, last_tokens_per_s=d.last_tokens_per_s,
            worker_crashes=row.worker_crashes, error=error, power_w=row.power_w,
            joules_per_token=row.last_joules_per_token, energy_meter=row.energy_meter,
            cpu_percent=row.cpu_percent, max_temp_c=row.max_temp_c, state=row.state,
            seen_ago_s=seen, throttled=bool(row.throttled), on_trial=bool(row.on_trial),
            previous_variant=row.previous_variant))
    return out


def status(fleet: Fleet, devices: list[Device], wait_s: float = 2.0) -> list[DeviceStatus]:
    refresh(fleet, devices, wait_s)
    return read(fleet, devices)


@dataclass(frozen=True)
class GenerateOutcome:
    device: str
    result: GenerationResult | None
    error: str = ""
    hint: str = ""


def generate(fleet: Fleet, devices: list[Device], prompt: str, max_tokens: int,
             temperature: float = 0.0) -> list[GenerateOutcome]:
    def one(device: Device) -> GenerateOutcome:
        try:
            with fleet.client(device) as client:
                result = client.generate(prompt, max_tokens, temperature)
        except FleetError as exc:
            return GenerateOutcome(device.name, None, exc.message, exc.hint)
        s = result.summary
        fleet.inventory.update_device(device.name, last_ttft_ms=s.ttft_ms,
                                      last_latency_ms=s.total_ms,
                                      last_tokens_per_s=s.decode_tokens_per_s)
        return GenerateOutcome(device.name, result)

    with ThreadPoolExecutor(max_workers=max(1, min(8, len(devices)))) as pool:
        return list(pool.map(one, devices))
