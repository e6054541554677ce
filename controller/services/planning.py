"""`fleet plan`: per device, which variant and why, without touching any device's state."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace

from google.protobuf.json_format import MessageToDict

from controller.adapters.tables import Device
from controller.core.models import ModelSpec, Profile
from controller.core.select import OBJECTIVES, Choice, Request, choose
from controller.errors import DeviceError, UsageError
from controller.services.context import Fleet, profile_from_probe


@dataclass(frozen=True)
class DevicePlan:
    device: Device
    choice: Choice | None
    profile_source: str  # "probed" | "declared"
    error: DeviceError | None = None
    probed_json: str = ""  # the agent's GetProfile answer, stored once a deploy succeeds
    measured: dict[str, float] = field(default_factory=dict)  # variant -> measured tok/s


@dataclass(frozen=True)
class ProfileLookup:
    profile: Profile | None
    source: str
    error: DeviceError | None = None
    probed_json: str = ""


def device_profile(fleet: Fleet, device: Device) -> ProfileLookup:
    """Probe the agent; fall back to the declared profile when it cannot be reached."""
    try:
        with fleet.client(device, timeout_s=5.0) as client:
            probed = client.get_profile()
    except DeviceError as exc:
        return ProfileLookup(fleet.declared_profile(device), "declared", exc)
    return ProfileLookup(profile_from_probe(fleet, device, probed), "probed", None,
                         json.dumps(MessageToDict(probed)))


def _measured(fleet: Fleet, device: Device, model: ModelSpec) -> dict[str, float]:
    out = {}
    for v in model.variants:
        m = fleet.inventory.latest_measurement(device.name, model.name, v.name)
        if m is not None:
            out[v.name] = m.decode_tokens_per_s
    if device.model == model.name and device.variant and device.last_tokens_per_s:
        out.setdefault(device.variant, device.last_tokens_per_s)
    return out


def plan(fleet: Fleet, model: ModelSpec, devices: list[Device], request: Request
         ) -> list[DevicePlan]:
    ctx = request.ctx
    if ctx <= 0 or ctx > model.arch.n_ctx_train:
        raise UsageError(f"--ctx {ctx} is outside 1..{model.arch.n_ctx_train} for {model.name}",
                         hint=f"{model.name} was trained with a {model.arch.n_ctx_train} context")
    if request.prefer not in OBJECTIVES:
        raise UsageError(f"--prefer {request.prefer!r} is not one of {', '.join(OBJECTIVES)}",
                         hint="use --prefer quality, speed or energy")

    def one(device: Device) -> DevicePlan:
        found = device_profile(fleet, device)
        if found.profile is None:
            return DevicePlan(device, None, found.source, found.error)
        disk = found.profile.disk_bytes if found.source == "probed" else 0
        req = replace(request, disk_free_bytes=disk)
        return DevicePlan(device, choose(model, found.profile, req, device.name),
                          found.source, found.error, found.probed_json,
                          _measured(fleet, device, model))

    with ThreadPoolExecutor(max_workers=min(16, len(devices))) as pool:
        return list(pool.map(one, devices))
