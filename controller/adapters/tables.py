"""Every SQLModel table, in one module."""

from __future__ import annotations

import json
from datetime import datetime, timezone

from sqlalchemy import DateTime
from sqlalchemy.orm import relationship
from sqlmodel import Field, Relationship, SQLModel

# Aware UTC timestamps, stated rather than left to SQLModel's version (TIMESTAMP WITH TIME ZONE
# on PostgreSQL); the schema itself is the migrations' (controller/migrations).
UTC_TIMESTAMP = DateTime(timezone=True)


def _now() -> datetime:
    return datetime.now(timezone.utc)


class DeviceGroup(SQLModel, table=True):
    __tablename__ = "device_group"
    name: str = Field(primary_key=True)
    created_at: datetime = Field(default_factory=_now, sa_type=UTC_TIMESTAMP)


class GroupMembership(SQLModel, table=True):
    """A device's direct membership of a group: a device belongs to any number of groups."""

    __tablename__ = "group_membership"
    device_name: str = Field(foreign_key="device.name", primary_key=True)
    group_name: str = Field(foreign_key="device_group.name", primary_key=True, index=True)


class GroupParent(SQLModel, table=True):
    """``parent_name`` contains ``group_name`` (Ansible's children): selecting the parent
    selects the devices of every group below it."""

    __tablename__ = "group_parent"
    group_name: str = Field(foreign_key="device_group.name", primary_key=True)
    parent_name: str = Field(foreign_key="device_group.name", primary_key=True, index=True)


class Device(SQLModel, table=True):
    __tablename__ = "device"
    name: str = Field(primary_key=True)
    host: str
    ssh_port: int = 22
    user: str = ""
    key_path: str = ""
    agent_port: int = 50051
    profile: str = ""  # declared profile name
    data_dir: str = ""  # agent data dir on the device; empty: ask the agent
    probed_json: str = ""  # last GetProfile answer, JSON
    state: str = "registered"  # registered | online | unreachable | deployed | failed
    model: str = ""
    variant: str = ""
    sha256: str = ""
    last_ttft_ms: float | None = None
    last_latency_ms: float | None = None
    last_tokens_per_s: float | None = None
    last_seen: datetime | None = Field(default=None, sa_type=UTC_TIMESTAMP)
    lab: bool = False
    labels_json: str = "{}"  # {"site": "berlin", ...}
    proxy_jump: str = ""  # [user@]host[:port] of a bastion (or from ~/.ssh/config)
    tls: bool = False  # enrolled: the agent requires the fleet's client certificate
    decode_efficiency: float | None = None  # calibrated share of bandwidth reached in decode
    created_at: datetime = Field(default_factory=_now, sa_type=UTC_TIMESTAMP)
    # the groups the device is directly in (loaded with it); ancestors are GroupParent's
    # (stated as SQLAlchemy's relationship(): SQLModel cannot read the postponed annotation)
    groups: list[DeviceGroup] = Relationship(sa_relationship=relationship(
        "DeviceGroup", secondary="group_membership", lazy="selectin",
        order_by="DeviceGroup.name"))

    @property
    def group_names(self) -> list[str]:
        """The groups the device is directly in, sorted."""
        return sorted(g.name for g in self.groups)

    @property
    def labels(self) -> dict[str, str]:
        value = json.loads(self.labels_json or "{}")
        return {str(k): str(v) for k, v in value.items()}


class ModelArtifact(SQLModel, table=True):
    """A variant file the controller holds locally, with its verified hash."""

    __tablename__ = "model_artifact"
    id: int | None = Field(default=None, primary_key=True)
    model: str = Field(index=True)
    variant: str
    sha256: str
    size_bytes: int
    path: str
    created_at: datetime = Field(default_factory=_now, sa_type=UTC_TIMESTAMP)


class Deployment(SQLModel, table=True):
    __tablename__ = "deployment"
    id: int | None = Field(default=None, primary_key=True)
    rollout: str = Field(index=True)  # one id per `fleet deploy` run
    device: str = Field(index=True)
    model: str
    variant: str
    sha256: str
    # active | rolled-back change the device's model; failed | halted | skipped | unchanged
    # are the outcomes of the other devices of the rollout, logged with their reasons
    status: str
    reason: str = ""
    bytes_sent: int = 0
    started_at: datetime = Field(default_factory=_now, sa_type=UTC_TIMESTAMP)
    finished_at: datetime | None = Field(default=None, sa_type=UTC_TIMESTAMP)


class Measurement(SQLModel, table=True):
    """Measured performance of one variant on one device (benchmark or live telemetry)."""

    __tablename__ = "measurement"
    id: int | None = Field(default=None, primary_key=True)
    device: str = Field(index=True)
    model: str
    variant: str
    sha256: str
    source: str  # benchmark | telemetry
    samples: int
    decode_tokens_per_s: float
    prefill_tokens_per_s: float
    ttft_ms: float
    predicted_tokens_per_s: float  # the model's prediction before this measurement
    decode_efficiency: float
    peak_rss_bytes: int = 0
    measured_at: datetime = Field(default_factory=_now, sa_type=UTC_TIMESTAMP)
