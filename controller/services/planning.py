"""`fleet plan`: per device, which variant and why, without touching any device's state."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from google.protobuf.json_format import MessageToDict

from controller.adapters.tables import Device
from controller.core.models import ModelSpec, Profile
from controller.core.select import Choice, Request, choose
from controller.errors import DeviceError, UsageError
from controller.services.context import Fleet, profile_from_probe


@dataclass(frozen=True)
class DevicePlan:
    device: Device
    choice: Choice | None
    profile_source: str  # "probed" | "declared"
    error: DeviceError | None = None
    probed_json: str = ""  # the agent's GetProfile answer, stored once a deploy succeeds


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


def plan(fleet: Fleet, model: ModelSpec, devices: list[Device], ctx: int,
         min_tokens_per_s: float = 0.0) -> list[DevicePlan]:
    if ctx <= 0 or ctx > model.arch.n_ctx_train:
        raise UsageError(f"--ctx {ctx} is outside 1..{model.arch.n_ctx_train} for {model.name}",
                         hint=f"{model.name} was trained with a {model.arch.n_ctx_train} context")

    def one(device: Device) -> DevicePlan:
        found = device_profile(fleet, device)
        if found.profile is None:
            return DevicePlan(device, None, found.source, found.error)
        request = Request(ctx=ctx, min_tokens_per_s=min_tokens_per_s,
                          disk_free_bytes=found.profile.disk_bytes
                          if found.source == "probed" else 0)
        return DevicePlan(device, choose(model, found.profile, request, device.name),
                          found.source, found.error, found.probed_json)

    with ThreadPoolExecutor(max_workers=min(16, len(devices))) as pool:
        return list(pool.map(one, devices))
