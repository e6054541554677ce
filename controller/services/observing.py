"""`fleet status` and `fleet generate`. Status reads the database the collector fills; unless a
`fleet monitor` keeps it fresh, it first runs a collection pass bounded by ``wait_s`` (devices
that do not answer in time are shown as last seen, never waited for)."""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING

import sqlalchemy as sa

from controller.adapters import device_models_db
from controller.adapters.tables import Device, DeviceLive, GroupMembership, GroupParent
from controller.core.device_models import DeviceModel
from controller.core.telemetry import device_state
from controller.errors import FleetError, Unreachable
from controller.services.context import Fleet
from controller.services.monitoring import monitor_running

if TYPE_CHECKING:  # gRPC is loaded when a device is contacted, not to read the database
    from controller.adapters.agent_client import GenerationResult
    from controller.services.collecting import Collector

__all__ = ["DeviceStatus", "GenerateOutcome", "device_state", "generate", "refresh",
           "status"]

LIVE = DeviceLive.__table__  # type: ignore[attr-defined]
DEVICE = Device.__table__  # type: ignore[attr-defined]
MEMBERSHIP = GroupMembership.__table__  # type: ignore[attr-defined]
PARENT = GroupParent.__table__  # type: ignore[attr-defined]


def _ancestors(groups: list[str], parents: dict[str, list[str]]) -> frozenset[str]:
    seen: set[str] = set()
    todo = list(groups)
    while todo:
        group = todo.pop()
        if group not in seen:
            seen.add(group)
            todo.extend(parents.get(group, []))
    return frozenset(seen)


@dataclass(frozen=True)
class DeviceRef:
    """The inventory fields status views show (cheaper than an ORM Device per row)."""

    name: str
    group_names: list[str]  # direct groups
    profile: str
    model: str
    variant: str
    labels_json: str = "{}"
    within: frozenset[str] = frozenset()  # its groups and every group they are nested in
    adapter: str = ""  # the LoRA adapter it serves by default ("" for none)

    @property
    def labels(self) -> dict[str, str]:
        value = json.loads(self.labels_json or "{}")
        return {str(k): str(v) for k, v in value.items()}


@dataclass(frozen=True)
class DeviceStatus:
    device: DeviceRef
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
    # every active model it runs (several per device), as last collected or deployed
    models: tuple[DeviceModel, ...] = ()


def refresh(fleet: Fleet, devices: list[Device], wait_s: float,
            collector: Collector | None = None) -> bool:
    """Run a collection pass for at most ``wait_s`` unless a monitor keeps the database
    fresh; True when one ran. ``collector``: a long-lived one to reuse (the dashboard)."""
    if wait_s <= 0 or not devices or monitor_running(fleet):
        return False
    from controller.services.collecting import Collector

    own = collector is None
    use = collector or Collector(fleet, min(32, len(devices)), timeout_s=max(0.5, wait_s))
    try:
        use.run_pass(devices, wait_s=wait_s)
    finally:
        if own:
            use.close()
    return True


_DEVICE_COLUMNS = ("name", "profile", "model", "variant", "labels_json",
                   "last_ttft_ms", "last_latency_ms", "last_tokens_per_s", "adapter")
_LIVE_COLUMNS = ("last_attempt_ts", "last_ok_ts", "state", "reachable", "active_variant",
                 "active_model", "requests_total", "worker_crashes", "last_error", "power_w",
                 "last_joules_per_token", "energy_meter", "cpu_percent", "max_temp_c",
                 "throttled", "on_trial", "previous_variant")


def read_all(fleet: Fleet) -> list[DeviceStatus]:
    """``read`` for every device of the inventory."""
    return read(fleet, None)


def read(fleet: Fleet, devices: list[Device] | None) -> list[DeviceStatus]:
    """Each device as the database has it (the collector's last contact): one query joining
    the devices' own rows (their summary columns follow each contact) with device_live.
    ``None``: every device."""
    wanted = None if devices is None else {d.name for d in devices}
    query = sa.select(*[DEVICE.c[n] for n in _DEVICE_COLUMNS],
                      *[LIVE.c[n].label(f"live_{n}") for n in _LIVE_COLUMNS]).outerjoin(
        LIVE, LIVE.c.device == DEVICE.c.name).order_by(DEVICE.c.name)
    if wanted is not None and len(wanted) <= 500:
        query = query.where(DEVICE.c.name.in_(sorted(wanted)))
    now = time.time()
    out = []
    with fleet.inventory.engine.connect() as conn:
        rows = [r for r in conn.execute(query) if wanted is None or r.name in wanted]
        groups: dict[str, list[str]] = {}
        for name, group in conn.execute(sa.select(MEMBERSHIP.c.device_name,
                                                  MEMBERSHIP.c.group_name).order_by(
                                                      MEMBERSHIP.c.group_name)):
            groups.setdefault(name, []).append(group)
        parents: dict[str, list[str]] = {}
        for child, parent in conn.execute(sa.select(PARENT.c.group_name,
                                                    PARENT.c.parent_name)):
            parents.setdefault(child, []).append(parent)
        models = device_models_db.read(conn, None if wanted is None or len(wanted) > 500
                                       else sorted(wanted))
    for r in rows:
        values = r._mapping
        direct = groups.get(r.name, [])
        d = DeviceRef(r.name, direct, r.profile, r.model, r.variant, r.labels_json,
                      _ancestors(direct, parents), r.adapter)
        if values["live_last_attempt_ts"] is None:
            out.append(DeviceStatus(d, False, d.variant, d.model, 0, r.last_ttft_ms,
                                    r.last_latency_ms, r.last_tokens_per_s, 0,
                                    "not collected yet", state="unknown",
                                    models=tuple(models.get(r.name, ()))))
            continue
        state = values["live_state"]
        ok_ts = values["live_last_ok_ts"]
        out.append(DeviceStatus(
            device=d, online=bool(values["live_reachable"]),
            active_variant=values["live_active_variant"],
            active_model=values["live_active_model"],
            requests=values["live_requests_total"], last_ttft_ms=r.last_ttft_ms,
            last_latency_ms=r.last_latency_ms, last_tokens_per_s=r.last_tokens_per_s,
            worker_crashes=values["live_worker_crashes"],
            error=values["live_last_error"] if state in ("unreachable", "drifted") else "",
            power_w=values["live_power_w"],
            joules_per_token=values["live_last_joules_per_token"],
            energy_meter=values["live_energy_meter"], cpu_percent=values["live_cpu_percent"],
            max_temp_c=values["live_max_temp_c"], state=state,
            seen_ago_s=None if ok_ts is None else now - ok_ts,
            throttled=bool(values["live_throttled"]), on_trial=bool(values["live_on_trial"]),
            previous_variant=values["live_previous_variant"],
            models=tuple(models.get(r.name, ()))))
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
    unreachable: bool = False  # the error was reaching the device, not generating


def generate(fleet: Fleet, devices: list[Device], prompt: str, max_tokens: int,
             temperature: float = 0.0, model: str = "") -> list[GenerateOutcome]:
    """``model``: a model name or alias on devices of several models ("": each one's
    default model)."""
    def one(device: Device) -> GenerateOutcome:
        try:
            with fleet.client(device) as client:
                result = client.generate(prompt, max_tokens, temperature, model=model)
        except FleetError as exc:
            return GenerateOutcome(device.name, None, exc.message, exc.hint,
                                   isinstance(exc, Unreachable))
        s = result.summary
        fleet.inventory.update_device(device.name, last_ttft_ms=s.ttft_ms,
                                      last_latency_ms=s.total_ms,
                                      last_tokens_per_s=s.decode_tokens_per_s)
        return GenerateOutcome(device.name, result)

    with ThreadPoolExecutor(max_workers=max(1, min(8, len(devices)))) as pool:
        return list(pool.map(one, devices))
