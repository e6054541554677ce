"""SqlInventory: devices, groups, artifacts and deployments in the controller's database."""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy.exc import SQLAlchemyError
from sqlmodel import Session, col, select

from controller.adapters.db import engine_for, safe_url
from controller.adapters.tables import (
    Device,
    DeviceGroup,
    GroupMembership,
    GroupParent,
    Measurement,
    ModelArtifact,
)
from controller.core.groups import ALL, UNGROUPED, below, children_of, direct_groups, loop_made_by
from controller.errors import EmptyGroup, FleetError, UnknownDevice, UnknownGroup, UsageError

# what an inventory import may change on a device that exists (``--replace``)
_INVENTORY_FIELDS = ("host", "ssh_port", "user", "key_path", "agent_port", "profile",
                     "labels_json", "proxy_jump")


@dataclass(frozen=True)
class GroupInfo:
    name: str
    parents: list[str]
    children: list[str]
    devices: list[str]  # directly in the group
    all_devices: list[str]  # in it or in a group nested in it


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

    # -- devices ------------------------------------------------------------------------
    def add_device(self, device: Device, groups: Sequence[str] = (),
                   replace: bool = False) -> Device:
        """Register ``device`` directly in ``groups`` (``ungrouped`` when none); with
        ``replace`` an existing device of that name is replaced, memberships included."""
        with self.session() as s:
            existing = s.get(Device, device.name)
            if existing and not replace:
                raise UsageError(f"device {device.name!r} already exists",
                                 hint=f"`fleet device remove {device.name}` first, or pick "
                                 "another name")
            if existing:
                existing.groups = []
                s.delete(existing)
                s.flush()
            device.groups = self._groups(s, direct_groups(groups))
            s.add(device)
            s.commit()
            return device

    def add_devices(self, devices: list[tuple[Device, list[str]]],
                    parents: Mapping[str, Iterable[str]] | None = None,
                    replace: bool = False) -> list[str]:
        """All or nothing, in one transaction: each device directly in its groups, and every
        ``group -> parents`` link (added to those already stored). A name conflict (without
        ``replace``) or a link that would make a group contain itself adds none. An existing
        device is updated where it stands, keeping what the fleet knows of it (its model,
        enrollment, measurements); its memberships become the given ones.

        Returns the names of the devices that existed before."""
        with self.session() as s:
            names = [d.name for d, _ in devices]
            existing = {d.name: d for d in s.exec(select(Device).where(
                col(Device.name).in_(names))).all()}
            if existing and not replace:
                raise UsageError(f"{len(existing)} devices already exist: "
                                 f"{', '.join(sorted(existing)[:5])}",
                                 hint="pass --replace to update them; nothing was imported")
            edges = self._edges(s)
            self._groups(s, [g for g in (parents or {}) if g not in (ALL, UNGROUPED)])
            wanted = {(child, parent) for child, ps in (parents or {}).items() for parent in ps}
            for child, parent in sorted(wanted - edges):
                if loop_made_by(child, parent, edges):
                    raise UsageError(f"group {parent!r} cannot contain {child!r}: {child!r} "
                                     f"already contains {parent!r}",
                                     hint="groups may not contain themselves; nothing was "
                                     "imported")
                edges.add((child, parent))
                self._groups(s, [child, parent])
                s.add(GroupParent(group_name=child, parent_name=parent))
            for device, groups in devices:
                group_rows = self._groups(s, direct_groups(groups))
                old = existing.get(device.name)
                if old is None:
                    device.groups = group_rows
                    s.add(device)
                    continue
                for key in _INVENTORY_FIELDS:
                    setattr(old, key, getattr(device, key))
                old.groups = group_rows
                s.add(old)
            s.commit()
            return sorted(existing)

    def get_device(self, name: str) -> Device:
        with self.session() as s:
            device = s.get(Device, name)
        if device is None:
            raise UnknownDevice(f"no device named {name!r}", hint="`fleet device list` shows them")
        return device

    def present(self, names: Collection[str]) -> set[str]:
        """Which of ``names`` are devices of the fleet (one query)."""
        if not names:
            return set()
        with self.session() as s:
            return set(s.exec(select(Device.name).where(col(Device.name).in_(list(names)))))

    def list_devices(self, group: str | None = None) -> list[Device]:
        """Every device, or those in ``group`` or any group nested in it (``all``: every
        device)."""
        with self.session() as s:
            query = select(Device).order_by(col(Device.name))
            if group and group != ALL:
                inside = below(group, children_of(self._edges(s)))
                query = query.where(col(Device.name).in_(
                    select(GroupMembership.device_name).where(
                        col(GroupMembership.group_name).in_(inside))))
            return list(s.exec(query).all())

    def devices_in_group(self, group: str) -> list[Device]:
        """Like ``list_devices(group)``, but an unknown or empty group is an error."""
        if group != ALL:
            with self.session() as s:
                if s.get(DeviceGroup, group) is None:
                    raise UnknownGroup(f"no group named {group!r}",
                                       hint=f"known groups: {self._known(s)}; `fleet group "
                                       "list` shows them with their devices")
        devices = self.list_devices(group)
        if not devices:
            raise EmptyGroup(f"group {group!r} has no devices",
                             hint=f"add one with `fleet device add NAME --host H --group {group}`"
                             f" or `fleet device group NAME --add {group}`")
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
                    device.groups = []  # the membership rows go with it
                    s.delete(device)
            s.commit()

    # -- groups ---------------------------------------------------------------------------
    def groups(self) -> list[str]:
        with self.session() as s:
            return [g.name for g in s.exec(select(DeviceGroup).order_by(col(DeviceGroup.name)))]

    def group_tree(self) -> list[GroupInfo]:
        """Every group with its parents, children and direct devices, by name."""
        with self.session() as s:
            edges = self._edges(s)
            members: dict[str, list[str]] = {}
            for m in s.exec(select(GroupMembership)).all():
                members.setdefault(m.group_name, []).append(m.device_name)
            names = [g.name for g in s.exec(select(DeviceGroup).order_by(col(DeviceGroup.name)))]
        kids = children_of(edges)
        return [GroupInfo(
            name=name,
            parents=sorted(p for c, p in edges if c == name),
            children=sorted(kids.get(name, [])),
            devices=sorted(members.get(name, [])),
            all_devices=sorted({d for g in below(name, kids) for d in members.get(g, [])}),
        ) for name in names]

    def add_group(self, name: str, parents: Sequence[str] = ()) -> None:
        """Create ``name`` (if new) inside ``parents`` (which are created if new)."""
        with self.session() as s:
            self._groups(s, [name])
            s.flush()
            self._link(s, name, parents, [])
            s.commit()

    def link_group(self, name: str, add: Sequence[str], remove: Sequence[str]) -> list[str]:
        """Put group ``name`` inside ``add`` and take it out of ``remove``; returns its
        parents after."""
        with self.session() as s:
            self._require_group(s, name)
            parents = self._link(s, name, add, remove)
            s.commit()
            return parents

    def remove_group(self, name: str) -> list[str]:
        """Forget group ``name``: its links go, its devices stay (in their other groups, or
        ``ungrouped``). Returns the devices that were directly in it."""
        with self.session() as s:
            group = self._require_group(s, name)
            if name == UNGROUPED:
                raise UsageError("'ungrouped' holds the devices in no other group",
                                 hint="put its devices into groups instead")
            for link in s.exec(select(GroupParent).where(
                    (GroupParent.group_name == name) | (GroupParent.parent_name == name))):
                s.delete(link)
            devices = list(s.exec(select(Device).where(col(Device.name).in_(
                select(GroupMembership.device_name).where(
                    GroupMembership.group_name == name)))).all())
            for device in devices:
                device.groups = self._groups(
                    s, direct_groups(g.name for g in device.groups if g.name != name))
            s.flush()
            s.delete(group)
            s.commit()
            return sorted(d.name for d in devices)

    def set_device_groups(self, name: str, add: Sequence[str],
                          remove: Sequence[str]) -> list[str]:
        """Add device ``name`` to ``add`` (created if new) and take it out of ``remove``;
        returns its groups after (``ungrouped`` when none is left)."""
        with self.session() as s:
            device = s.get(Device, name)
            if device is None:
                raise UnknownDevice(f"no device named {name!r}",
                                    hint="`fleet device list` shows them")
            current = {g.name for g in device.groups}
            absent = sorted(set(remove) - current)
            if absent:
                raise UsageError(f"{name} is not directly in {', '.join(absent)}",
                                 hint=f"its groups: {', '.join(sorted(current))}")
            device.groups = self._groups(s, direct_groups((current - set(remove)) | set(add)))
            s.add(device)
            s.commit()
            return device.group_names

    def _groups(self, s: Session, names: Iterable[str]) -> list[DeviceGroup]:
        rows = []
        for name in sorted(set(names)):
            group = s.get(DeviceGroup, name)
            if group is None:
                group = DeviceGroup(name=name)
                s.add(group)
            rows.append(group)
        return rows

    def _require_group(self, s: Session, name: str) -> DeviceGroup:
        group = s.get(DeviceGroup, name)
        if group is None:
            raise UnknownGroup(f"no group named {name!r}", hint=f"known groups: {self._known(s)}")
        return group

    def _link(self, s: Session, name: str, add: Sequence[str],
              remove: Sequence[str]) -> list[str]:
        edges = self._edges(s)
        for parent in remove:
            link = s.get(GroupParent, (name, parent))
            if link is None:
                raise UsageError(f"group {name!r} is not inside {parent!r}",
                                 hint="`fleet group show NAME` shows its parents")
            s.delete(link)
            edges.discard((name, parent))
        for parent in add:
            if (name, parent) in edges:
                continue
            if loop_made_by(name, parent, edges):
                raise UsageError(f"group {parent!r} cannot contain {name!r}: {name!r} "
                                 f"already contains {parent!r}",
                                 hint="groups may not contain themselves")
            self._groups(s, [parent])
            s.flush()
            s.add(GroupParent(group_name=name, parent_name=parent))
            edges.add((name, parent))
        return sorted(p for c, p in edges if c == name)

    @staticmethod
    def _edges(s: Session) -> set[tuple[str, str]]:
        return {(e.group_name, e.parent_name) for e in s.exec(select(GroupParent)).all()}

    @staticmethod
    def _known(s: Session) -> str:
        return ", ".join(g.name for g in s.exec(select(DeviceGroup).order_by(
            col(DeviceGroup.name))).all()) or "none"

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
