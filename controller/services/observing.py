"""`fleet status` and `fleet generate`: live state and inference through the agents."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timezone

from agent.rpc import agent_pb2 as pb
from controller.adapters.agent_client import GenerationResult
from controller.adapters.tables import Device
from controller.errors import FleetError
from controller.services.context import Fleet

STATUS_TAIL = 50


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
    state: str = ""  # see device_state


def device_state(online: bool, active_sha256: str, on_trial: bool, deployed_sha256: str) -> str:
    """What a device is doing, seen against what the fleet last deployed to it:
    unreachable | on trial (loaded, not yet committed) | deployed (runs what was deployed) |
    drifted (runs something else, or nothing) | serving (a model nobody deployed) | idle."""
    if not online:
        return "unreachable"
    if on_trial:
        return "on trial"
    if deployed_sha256:
        return "deployed" if active_sha256 == deployed_sha256 else "drifted"
    return "serving" if active_sha256 else "idle"


def _status_one(fleet: Fleet, device: Device) -> DeviceStatus:
    try:
        with fleet.client(device, timeout_s=3.0) as client:
            models = client.list_models()
            # the latest few records are enough: the dashboard polls this every few seconds
            telemetry = client.telemetry(limit=STATUS_TAIL, tail=True)
    except FleetError as exc:
        fleet.inventory.update_device(device.name, state="unreachable")
        return DeviceStatus(device, False, device.variant, device.model, 0, None,
                            device.last_latency_ms, device.last_tokens_per_s, 0, exc.detail,
                            state="unreachable")
    active = next((m for m in models if m.active), None)
    state = device_state(True, active.sha256 if active else "",
                         bool(active and active.on_trial), device.sha256)
    # the last numbers of the model running now, not of one tried and rolled back since
    ok = [r for r in telemetry.records
          if r.outcome == "ok" and (active is None or r.sha256 == active.sha256)]
    last = ok[-1] if ok else None
    now = datetime.now(timezone.utc)
    fields: dict[str, object] = {"last_seen": now, "state": state}
    if last:
        fields.update(last_ttft_ms=last.ttft_ms, last_latency_ms=last.total_ms,
                      last_tokens_per_s=last.decode_tokens_per_s)
    fleet.inventory.update_device(device.name, **fields)
    return DeviceStatus(
        device=device, online=True,
        active_variant=active.variant if active else "",
        active_model=active.name if active else "",
        requests=telemetry.sample.requests_total,
        last_ttft_ms=last.ttft_ms if last else None,
        last_latency_ms=last.total_ms if last else None,
        last_tokens_per_s=last.decode_tokens_per_s if last else None,
        worker_crashes=telemetry.sample.worker_crashes,
        power_w=telemetry.sample.power_w or None,
        joules_per_token=last.joules_per_token if last and last.joules_per_token else None,
        energy_meter=telemetry.sample.energy_meter,
        cpu_percent=telemetry.sample.cpu_percent,
        max_temp_c=max(telemetry.sample.temperatures_c.values(), default=None),
        error=_drift(active, device) if state == "drifted" else "",
        state=state,
    )



def _drift(active: pb.ModelInfo | None, device: Device) -> str:
    runs = f"{active.name} {active.variant}" if active else "no model"
    return f"runs {runs}; the fleet deployed {device.model} {device.variant}"


def status(fleet: Fleet, devices: list[Device]) -> list[DeviceStatus]:
    if not devices:
        return []
    with ThreadPoolExecutor(max_workers=min(16, len(devices))) as pool:
        return list(pool.map(lambda d: _status_one(fleet, d), devices))


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
            return GenerateOutcome(device.name, None, exc.detail, exc.hint)
        s = result.summary
        fleet.inventory.update_device(device.name, last_ttft_ms=s.ttft_ms,
                                      last_latency_ms=s.total_ms,
                                      last_tokens_per_s=s.decode_tokens_per_s)
        return GenerateOutcome(device.name, result)

    with ThreadPoolExecutor(max_workers=max(1, min(8, len(devices)))) as pool:
        return list(pool.map(one, devices))
