"""SqlInventory: devices, groups, artifacts and deployments in the controller's database."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy.exc import SQLAlchemyError
from sqlmodel import Session, col, select

from controller.adapters.db import engine_for, safe_url
from controller.adapters.tables import (
    Device,
    DeviceGroup,
    Measurement,
    ModelArtifact,
)
from controller.errors import EmptyGroup, FleetError, UnknownDevice, UnknownGroup, UsageError


class SqlInventory:
    def __init__(self, url: str) -> None:
        self.url = url
        try:
            self.engine = engine_for(url)
        except SQLAlchemyError as exc:
            raise FleetError(f"cannot open database {safe_url(url)}: {_first_line(exc)}",
                             hint="check FLEET_DB_URL / --db") from exc

    def session(self) -> Session:
        return Session(self.engine, expire_on_commit=False)

    # -- devices --------------------------------------------------------------------------
    def add_device(self, device: Device, replace: bool = False) -> Device:
        with self.session() as s:
            existing = s.get(Device, device.name)
            if existing and not replace:
                raise UsageError(f"device {device.name!r} already exists",
                                 hint=f"`fleet device remove {device.name}` first, or pick "
                                 "another name")
            if s.get(DeviceGroup, device.group_name) is None:
                s.add(DeviceGroup(name=device.group_name))
                s.flush()
            if existing:
                s.delete(existing)
                s.flush()
            s.add(device)
            s.commit()
            return device

    def add_devices(self, devices: list[Device], replace: bool = False) -> None:
        """All or nothing: one transaction; a name conflict (without ``replace``) adds none."""
        with self.session() as s:
            names = [d.name for d in devices]
            existing = {d.name: d for d in s.exec(select(Device).where(
                col(Device.name).in_(names))).all()}
            if existing and not replace:
                raise UsageError(f"{len(existing)} devices already exist: "
                                 f"{', '.join(sorted(existing)[:5])}",
                                 hint="pass --replace to update them; nothing was imported")
            for group in sorted({d.group_name for d in devices}):
                if s.get(DeviceGroup, group) is None:
                    s.add(DeviceGroup(name=group))
            s.flush()
            for old in existing.values():
                s.delete(old)
            s.flush()
            for device in devices:
                s.add(device)
            s.commit()

    def get_device(self, name: str) -> Device:
        with self.session() as s:
            device = s.get(Device, name)
        if device is None:
            raise UnknownDevice(f"no device named {name!r}", hint="`fleet device list` shows them")
        return device

    def list_devices(self, group: str | None = None) -> list[Device]:
        with self.session() as s:
            query = select(Device).order_by(col(Device.name))
            if group:
                query = query.where(Device.group_name == group)
            return list(s.exec(query).all())

    def devices_in_group(self, group: str) -> list[Device]:
        with self.session() as s:
            if s.get(DeviceGroup, group) is None:
                known = ", ".join(g.name for g in s.exec(select(DeviceGroup)).all()) or "none"
                raise UnknownGroup(f"no group named {group!r}",
                                   hint=f"known groups: {known}; add devices with "
                                   "`fleet device add NAME --host H --group G`")
        devices = self.list_devices(group)
        if not devices:
            raise EmptyGroup(f"group {group!r} has no devices",
                             hint=f"add one with `fleet device add NAME --host H --group {group}`")
        return devices

    def update_device(self, name: str, **fields: Any) -> None:
        with self.session() as s:
            device = s.get(Device, name)
            if device is None:
                return
            for key, value in fields.items():
                setattr(device, key, value)
            s.add(device)
            s.commit()

    def remove_devices(self, names: Iterable[str]) -> None:
        with self.session() as s:
            for name in names:
                device = s.get(Device, name)
                if device:
                    s.delete(device)
            s.commit()

    def groups(self) -> list[str]:
        with self.session() as s:
            return [g.name for g in s.exec(select(DeviceGroup).order_by(col(DeviceGroup.name)))]

    # -- artifacts ------------------------------------------------------------------------
    def artifact(self, model: str, variant: str) -> ModelArtifact | None:
        with self.session() as s:
            query = select(ModelArtifact).where(
                ModelArtifact.model == model, ModelArtifact.variant == variant
            ).order_by(col(ModelArtifact.id).desc())
            return s.exec(query).first()

    def record_artifact(self, artifact: ModelArtifact) -> None:
        with self.session() as s:
            for old in s.exec(select(ModelArtifact).where(
                ModelArtifact.model == artifact.model, ModelArtifact.variant == artifact.variant
            )).all():
                s.delete(old)
            s.add(artifact)
            s.commit()

    # -- measurements ---------------------------------------------------------------------
    def record_measurement(self, measurement: Measurement) -> None:
        with self.session() as s:
            s.add(measurement)
            s.commit()

    def latest_measurement(self, device: str, model: str, variant: str) -> Measurement | None:
        with self.session() as s:
            query = select(Measurement).where(
                Measurement.device == device, Measurement.model == model,
                Measurement.variant == variant,
            ).order_by(col(Measurement.id).desc())
            return s.exec(query).first()


def _first_line(exc: SQLAlchemyError) -> str:
    """The driver's own reason (e.g. connection refused), without SQLAlchemy's background
    link or the SQL."""
    text = str(getattr(exc, "orig", None) or exc).strip().splitlines()
    return text[0][:200] if text else exc.__class__.__name__
