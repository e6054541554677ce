"""`fleet undeploy MODEL`: take one model off each chosen device that runs several, leaving the
others serving (controller.core.undeploy decides per device). The agent stops the model's
worker and empties its slot, keeping the file as the slot's previous model (a later deploy of
it sends nothing); the fleet's record of the device's models follows."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from controller.adapters import device_models_db
from controller.adapters.device_link import store_view
from controller.adapters.tables import Device
from controller.core import device_models
from controller.core.undeploy import Held, decide
from controller.errors import FleetError, Unreachable
from controller.services.context import Fleet
from controller.services.ports import StoreView


@dataclass(frozen=True)
class UndeployOutcome:
    device: str
    status: str  # removed | absent | refused | unreachable | failed
    reason: str
    hint: str = ""


def _held(store: StoreView, device: Device) -> list[Held]:
    """The device's active models; an agent of one model reports no slots: its one model is
    the one the fleet last deployed there."""
    if not store.slots:
        return [Held(device.model, store.active, on_trial=store.on_trial)] if store.active \
            else []
    return [Held(s.name, s.active, s.aliases, s.on_trial) for s in store.slots if s.active]


def undeploy(fleet: Fleet, devices: list[Device], name: str, allow_empty: bool
             ) -> list[UndeployOutcome]:
    def one(device: Device) -> UndeployOutcome:
        try:
            with fleet.client(device) as client:
                step = decide(_held(store_view(client.get_store()), device), name, allow_empty)
                if step.status != "remove":
                    return UndeployOutcome(device.name, step.status, step.reason, step.hint)
                client.unload_model(step.sha256)
                after = store_view(client.get_store())
                adapters = {m.base_sha256: (m.name, m.sha256) for m in client.list_models()
                            if m.format == "lora" and m.active}
        except FleetError as exc:
            return UndeployOutcome(device.name, "unreachable" if isinstance(exc, Unreachable)
                                   else "failed", exc.message, exc.hint)
        _record(fleet, device, name, after, adapters)
        return UndeployOutcome(device.name, "removed", step.reason)

    with ThreadPoolExecutor(max_workers=max(1, min(8, len(devices)))) as pool:
        return list(pool.map(one, devices))


def _record(fleet: Fleet, device: Device, name: str, after: StoreView,
            adapters: dict[str, tuple[str, str]]) -> None:
    """The device's model rows without ``name``; when ``name`` was what the fleet last
    deployed there, the device row names what serves by default now (or nothing), with the
    adapter the device applies on it by default (``adapters``: base sha256 -> (name, sha256),
    the agent's own word)."""
    with fleet.inventory.engine.begin() as conn:
        models = device_models_db.read(conn, [device.name]).get(device.name, [])
        left = device_models.taken_off(models, name)
        device_models_db.write(conn, [(device.name, left)])
    if device.model != name:
        return
    default = next((m for m in left if m.sha256 == after.active), None)
    if default is None:  # it serves nothing now (--allow-empty)
        fleet.inventory.update_device(device.name, model="", variant="", sha256="",
                                      adapter="", adapter_sha256="", state="online")
        return
    adapter, adapter_sha256 = adapters.get(default.sha256, ("", ""))
    fleet.inventory.update_device(device.name, model=default.name, variant=default.variant,
                                  sha256=default.sha256, adapter=adapter,
                                  adapter_sha256=adapter_sha256)
