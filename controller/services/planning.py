"""`fleet plan`: per device, which variant and why, without touching any device's state."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from dataclasses import replace as dc_replace

from google.protobuf.json_format import MessageToDict

from controller.adapters.tables import Device
from controller.core.models import ModelSpec, Profile
from controller.core.select import OBJECTIVES, Choice, Request, choose
from controller.errors import DeviceError, UsageError
from controller.services.context import Fleet, profile_from_probe, stored_profile


@dataclass(frozen=True)
class DevicePlan:
    device: Device
    choice: Choice | None
    profile_source: str  # "probed" | "last probe" (agent unreachable) | "declared"
    error: DeviceError | None = None
    probed_json: str = ""  # the agent's GetProfile answer, stored once a deploy succeeds
    measured: dict[str, float] = field(default_factory=dict)  # variant -> measured tok/s
    held: frozenset[str] = frozenset()  # blobs its store held when planned (sites seed from it)


@dataclass(frozen=True)
class ProfileLookup:
    profile: Profile | None
    source: str
    error: DeviceError | None = None
    probed_json: str = ""
    # the device's store: the blobs it holds intact (active, previous, staged, others) and
    # the disk it has for a new one (free plus what its store may free); None when unknown
    held: frozenset[str] = frozenset()
    disk_free_bytes: int | None = None
    # the active models of an agent that holds several: (name, memory bytes its guard counts)
    models: tuple[tuple[str, int], ...] = ()


def device_profile(fleet: Fleet, device: Device) -> ProfileLookup:
    """Probe the agent; fall back to the declared profile when it cannot be reached."""
    try:
        with fleet.client(device, timeout_s=5.0) as client:
            probed = client.get_profile()
            store = client.get_store()
    except DeviceError as exc:
        source = "last probe" if device.probed_json else "declared"
        return ProfileLookup(stored_profile(fleet, device), source, exc, device.probed_json)
    return ProfileLookup(profile_from_probe(fleet, device, probed), "probed", None,
                         json.dumps(MessageToDict(probed)), frozenset(store.blobs),
                         store.disk_free_bytes + store.reclaimable_bytes,
                         tuple((s.name, s.memory_bytes) for s in store.slots
                               if s.active_sha256))


def with_local_hashes(fleet: Fleet, model: ModelSpec) -> ModelSpec:
    """The model with each cached variant's sha256, so a device's held blobs are known by
    variant (the catalog names hashes only for files published with one)."""
    variants = []
    for v in model.variants:
        art = fleet.artifacts.local(model, v)
        variants.append(dc_replace(v, sha256=v.sha256 or (art.sha256 if art else "")))
    return dc_replace(model, variants=tuple(variants))


def _measured(fleet: Fleet, device: Device, model: ModelSpec) -> dict[str, float]:
    out = {}
    for v in model.variants:
        m = fleet.inventory.latest_measurement(device.name, model.name, v.name)
        if m is not None:
            out[v.name] = m.decode_tokens_per_s
    if device.model == model.name and device.variant and device.last_tokens_per_s:
        out.setdefault(device.variant, device.last_tokens_per_s)
    return out


def kept_beside(models: tuple[tuple[str, int], ...], model: str, replace: bool
                ) -> tuple[tuple[str, int], ...]:
    """The models a device keeps while ``model`` loads: every other active one, unless the
    deploy replaces them (a new variant of ``model`` takes its own slot's place)."""
    return () if replace else tuple(m for m in models if m[0] != model)


def plan(fleet: Fleet, model: ModelSpec, devices: list[Device], request: Request,
         replace: bool = False) -> list[DevicePlan]:
    """``replace``: the model is to run instead of the device's other models, so it may
    use all its memory; else beside them, in what they leave."""
    ctx = request.ctx
    if ctx <= 0 or ctx > model.arch.n_ctx_train:
        raise UsageError(f"--ctx {ctx} is outside 1..{model.arch.n_ctx_train} for {model.name}",
                         hint=f"{model.name} was trained with a {model.arch.n_ctx_train} context")
    if request.prefer not in OBJECTIVES:
        raise UsageError(f"--prefer {request.prefer!r} is not one of {', '.join(OBJECTIVES)}",
                         hint="use --prefer quality, speed or energy")

    hashed = with_local_hashes(fleet, model)

    def one(device: Device) -> DevicePlan:
        found = device_profile(fleet, device)
        if found.profile is None:
            return DevicePlan(device, None, found.source, found.error)
        # a held file costs no disk; 0 free is a full disk, not an unknown one
        req = dc_replace(request, disk_free_bytes=found.disk_free_bytes,
                         blobs_held=found.held,
                         resident=kept_beside(found.models, model.name, replace))
        return DevicePlan(device, choose(hashed, found.profile, req, device.name),
                          found.source, found.error, found.probed_json,
                          _measured(fleet, device, model), found.held)

    with ThreadPoolExecutor(max_workers=min(16, len(devices))) as pool:
        return list(pool.map(one, devices))
