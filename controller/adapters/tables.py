"""Every SQLModel table, in one module."""

from __future__ import annotations

import json
from datetime import datetime, timezone

from sqlalchemy import BigInteger, DateTime
from sqlalchemy.orm import relationship
from sqlmodel import Field, Relationship, SQLModel

# Byte counts of multi-GB models overflow a 32-bit INTEGER on PostgreSQL: BIGINT.
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
    size_bytes: int = Field(sa_type=BigInteger)
    path: str
    created_at: datetime = Field(default_factory=_now, sa_type=UTC_TIMESTAMP)


class RolloutRow(SQLModel, table=True):
    """One `fleet deploy` run: its policy and where it stands (controller.services.ports
    .Rollout is what services see)."""

    __tablename__ = "rollout"
    id: str = Field(primary_key=True)
    model: str
    status: str = Field(default="running", index=True)  # see ports.Rollout.status
    policy_json: str = "{}"
    waves_json: str = "[]"  # devices per wave
    wave: int = 0
    approved_wave: int = 0
    next_wave_at: datetime | None = Field(default=None, sa_type=UTC_TIMESTAMP)
    controller: str = ""  # host:pid driving it
    epoch: int = 0  # bumped by every takeover, so two controllers never both claim it
    heartbeat_at: datetime | None = Field(default=None, sa_type=UTC_TIMESTAMP)
    abort_requested: bool = False
    reason: str = ""
    created_at: datetime = Field(default_factory=_now, sa_type=UTC_TIMESTAMP)
    updated_at: datetime = Field(default_factory=_now, sa_type=UTC_TIMESTAMP)
    finished_at: datetime | None = Field(default=None, sa_type=UTC_TIMESTAMP)


class RolloutDevice(SQLModel, table=True):
    """One device's part of a rollout: what it gets and the step it is at (core.steps)."""

    __tablename__ = "rollout_device"
    rollout: str = Field(primary_key=True, foreign_key="rollout.id")
    device: str = Field(primary_key=True, index=True)
    position: int = 0
    wave: int = 0
    step: str = Field(default="planned", index=True)
    variant: str = ""
    format: str = ""
    sha256: str = ""
    size_bytes: int = Field(default=0, sa_type=BigInteger)
    path: str = ""  # the file on the controller
    n_ctx: int = 0
    memory_bytes: int = Field(default=0, sa_type=BigInteger)
    choice: str = ""  # why this variant
    reason: str = ""  # why the device is at this step
    hint: str = ""
    bytes_sent: int = Field(default=0, sa_type=BigInteger)
    model_failed: bool = False
    upload_attempts: int = 0
    predicted_json: str = "{}"
    started_at: datetime | None = Field(default=None, sa_type=UTC_TIMESTAMP)
    updated_at: datetime = Field(default_factory=_now, sa_type=UTC_TIMESTAMP)
    finished_at: datetime | None = Field(default=None, sa_type=UTC_TIMESTAMP)


class RolloutEvent(SQLModel, table=True):
    """Every step every device took, in order (what `fleet rollouts show --events` prints)."""

    __tablename__ = "rollout_event"
    id: int | None = Field(default=None, primary_key=True)
    rollout: str = Field(index=True)
    device: str
    step: str
    reason: str = ""
    bytes_sent: int = Field(default=0, sa_type=BigInteger)
    at: datetime = Field(default_factory=_now, sa_type=UTC_TIMESTAMP)


class DeviceLease(SQLModel, table=True):
    """A device taken by a rollout: one rollout per device at a time (the primary key)."""

    __tablename__ = "device_lease"
    device: str = Field(primary_key=True)
    rollout: str = Field(index=True)
    acquired_at: datetime = Field(default_factory=_now, sa_type=UTC_TIMESTAMP)


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
    peak_rss_bytes: int = Field(default=0, sa_type=BigInteger)
    measured_at: datetime = Field(default_factory=_now, sa_type=UTC_TIMESTAMP)
