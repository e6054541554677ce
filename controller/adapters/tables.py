"""Every SQLModel table, in one module."""

from __future__ import annotations

import json
from datetime import datetime, timezone

from sqlalchemy import BigInteger, DateTime, Index
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
    # the backend that share was measured on (cpu, cuda, ...; 0011_calibration_backend)
    decode_efficiency_backend: str = ""
    # the LoRA adapter it serves by default on its model (0008_adapter_rollouts); "" for none
    adapter: str = ""
    adapter_sha256: str = ""
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


class DeviceModelRow(SQLModel, table=True):
    """One active model on a device (several per device: controller.core.device_models),
    kept by the collector (what the agent reports) and by rollouts (what they committed)."""

    __tablename__ = "device_model"
    device: str = Field(primary_key=True)
    name: str = Field(primary_key=True)  # the model's name (its slot on the device)
    variant: str = ""
    sha256: str = ""
    aliases_json: str = "[]"  # sorted
    pinned: bool = False
    resident: bool = False  # loaded in a worker now (else loads on its next request)
    on_trial: bool = False
    memory_bytes: int = Field(default=0, sa_type=BigInteger)
    last_used_at: datetime | None = Field(default=None, sa_type=UTC_TIMESTAMP)
    updated_at: datetime = Field(default_factory=_now, sa_type=UTC_TIMESTAMP)
    # the LoRA adapter its requests get by default (0009_device_model_adapter); "" for none
    adapter: str = ""


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
    progress_bytes: int = Field(default=0, sa_type=BigInteger)  # of the upload under way
    model_failed: bool = False
    upload_attempts: int = 0
    predicted_json: str = "{}"
    started_at: datetime | None = Field(default=None, sa_type=UTC_TIMESTAMP)
    updated_at: datetime = Field(default_factory=_now, sa_type=UTC_TIMESTAMP)
    finished_at: datetime | None = Field(default=None, sa_type=UTC_TIMESTAMP)
    # where its bytes came from (0006_fanout): bytes_sent is what the controller sent
    site: str = ""
    bytes_from_peers: int = Field(default=0, sa_type=BigInteger)
    peer_bytes_json: str = "{}"  # {"lab-2": 41943040, ...}
    # format "lora" (0008_adapter_rollouts): the base the adapter applies on on this device
    base_sha256: str = ""
    # its store held the artifact when planned (0010_rollout_device_held)
    held: bool = False


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


# -- telemetry (controller.services.collecting writes, the queries read) --------------------
# Times are float UNIX seconds (``ts``) and integer bucket starts: compact, the same on every
# database, and what per-minute bucketing needs. Request and sample rows are keyed by
# (device, epoch_no, seq): the agent's own sequence, so a row can never be stored twice.
BIG = BigInteger()


class TelemetryModel(SQLModel, table=True):
    """The model files telemetry names, so each row carries a small id, not a sha256."""

    __tablename__ = "telemetry_model"
    id: int | None = Field(default=None, primary_key=True)
    sha256: str = Field(unique=True)
    model: str = ""
    variant: str = ""


class DeviceLive(SQLModel, table=True):
    """Per device: the collector's cursors and what the last contact said."""

    __tablename__ = "device_live"
    device: str = Field(primary_key=True)
    epoch: str = ""  # the agent's request-log identity
    epoch_no: int = 0  # bumped when it changes (rows keep the number, not the string)
    last_seq: int = Field(default=0, sa_type=BIG)
    sample_epoch: str = ""
    sample_epoch_no: int = 0
    last_sample_seq: int = Field(default=0, sa_type=BIG)
    last_sample_ts: float | None = None
    reachable: bool = False
    last_ok_ts: float | None = None
    last_attempt_ts: float | None = None
    unreachable_since_ts: float | None = None
    last_error: str = ""
    state: str = ""  # deployed | on trial | drifted | serving | idle | unreachable
    active_sha256: str = ""
    active_model: str = ""
    active_variant: str = ""
    on_trial: bool = False
    previous_model: str = ""
    previous_variant: str = ""
    worker_crashes: int = 0
    requests_total: int = Field(default=0, sa_type=BIG)
    power_w: float | None = None
    energy_meter: str = ""
    cpu_percent: float | None = None
    ram_used_bytes: int = Field(default=0, sa_type=BIG)
    ram_total_bytes: int = Field(default=0, sa_type=BIG)
    max_temp_c: float | None = None
    last_joules_per_token: float | None = None  # of the last successful request
    throttled: bool = False
    throttle_reasons: str = ""
    sample_every_s: float = 0.0
    pass_seconds: float = 0.0  # how long the last contact took


class RequestRow(SQLModel, table=True):
    __tablename__ = "telemetry_request"
    device: str = Field(primary_key=True)
    epoch_no: int = Field(primary_key=True)
    seq: int = Field(primary_key=True, sa_type=BIG)
    ts: float = Field(index=True)
    model_id: int
    ttft_ms: float
    total_ms: float
    prompt_tokens: int
    completion_tokens: int
    decode_tps: float
    prefill_tps: float
    outcome: str  # ok | error | cancelled
    energy_j: float
    meter: str
    peak_rss_bytes: int = Field(sa_type=BIG)
    # several models per device (0007_device_models): the name that served it, the LoRA
    # adapter applied ("": the base alone), the wait for an on-demand load (0: resident)
    model: str = ""
    adapter: str = ""
    load_wait_ms: float = 0.0


class SampleRow(SQLModel, table=True):
    __tablename__ = "telemetry_sample"
    device: str = Field(primary_key=True)
    epoch_no: int = Field(primary_key=True)
    seq: int = Field(primary_key=True, sa_type=BIG)
    ts: float = Field(index=True)
    interval_s: float
    cpu_percent: float
    ram_used_bytes: int = Field(sa_type=BIG)
    power_w: float
    energy_j: float
    meter: str
    max_temp_c: float | None = None
    temps_json: str = "{}"
    throttled: bool = False
    throttle_reasons: str = ""
    cpu_freq_mhz: float = 0.0
    worker_crashes: int = 0
    model_id: int = 0  # the model active when the sample was taken (0: none)


class RequestRollup(SQLModel, table=True):
    """Requests of one device, model file and meter in one minute or hour: counts, sums, and
    log-bucket sketches (controller.core.sketch) of TTFT and decode tok/s to merge."""

    __tablename__ = "telemetry_request_rollup"
    __table_args__ = (Index("ix_telemetry_request_rollup_time", "period_s", "bucket"),)
    period_s: int = Field(primary_key=True)  # 60 | 3600
    device: str = Field(primary_key=True)
    model_id: int = Field(primary_key=True)
    meter: str = Field(primary_key=True)
    bucket: int = Field(primary_key=True, sa_type=BIG)  # UNIX seconds at the bucket start
    requests: int = 0
    errors: int = 0
    cancelled: int = 0
    prompt_tokens: int = Field(default=0, sa_type=BIG)
    completion_tokens: int = Field(default=0, sa_type=BIG)
    energy_j: float = 0.0
    ttft_sum_ms: float = 0.0
    latency_sum_ms: float = 0.0
    ttft_sketch: str = ""
    tps_sketch: str = ""


class SampleRollup(SQLModel, table=True):
    __tablename__ = "telemetry_sample_rollup"
    __table_args__ = (Index("ix_telemetry_sample_rollup_time", "period_s", "bucket"),)
    period_s: int = Field(primary_key=True)
    device: str = Field(primary_key=True)
    model_id: int = Field(primary_key=True)  # the model active during the samples (0: none)
    meter: str = Field(primary_key=True)
    bucket: int = Field(primary_key=True, sa_type=BIG)
    samples: int = 0
    seconds: float = 0.0
    energy_j: float = 0.0
    cpu_sum: float = 0.0
    max_temp_c: float | None = None
    throttled_samples: int = 0
    worker_crashes: int = 0  # the highest count seen in the bucket


class TelemetryGap(SQLModel, table=True):
    """What the collector could not see: ``unreachable`` (start..end of a period without
    contact), ``records-lost`` / ``samples-lost`` (the agent's buffer dropped ``lost`` entries
    before they were read), ``agent-down`` (no samples: the agent was not running), ``reset``
    (the agent's log started over)."""

    __tablename__ = "telemetry_gap"
    id: int | None = Field(default=None, primary_key=True)
    device: str = Field(index=True)
    kind: str
    start_ts: float
    end_ts: float | None = None  # None while still open
    lost: int = 0
    detail: str = ""


class MonitorSetting(SQLModel, table=True):
    """Grid carbon intensity and SLO limits, set for the fleet, a group or a label."""

    __tablename__ = "monitor_setting"
    scope: str = Field(primary_key=True)  # "fleet" | "group:NAME" | "label:KEY=VALUE"
    key: str = Field(primary_key=True)  # grid_g_per_kwh | slo_p95_ttft_ms | slo_min_tps
    value: float
    updated_at: datetime = Field(default_factory=_now, sa_type=UTC_TIMESTAMP)


class PlanPrediction(SQLModel, table=True):
    """What the selector predicted for a device and variant (recorded with a rollout, or
    estimated by the collector for a model no rollout predicted)."""

    __tablename__ = "plan_prediction"
    id: int | None = Field(default=None, primary_key=True)
    rollout: str = Field(default="", index=True)
    device: str = Field(index=True)
    model: str
    variant: str
    sha256: str = ""
    profile: str = ""
    tokens_per_s: float = 0.0
    ttft_ms: float = 0.0
    joules_per_token: float = 0.0
    prompt_tokens: int = 0
    ctx: int = 0
    source: str = "plan"  # plan | estimate
    created_at: datetime = Field(default_factory=_now, sa_type=UTC_TIMESTAMP)


class CollectorBeat(SQLModel, table=True):
    """A running `fleet monitor` says so here each pass; status and the dashboard then read
    the database instead of starting passes of their own."""

    __tablename__ = "collector_beat"
    name: str = Field(primary_key=True)  # host:pid
    started_ts: float
    beat_ts: float
    interval_s: float
    devices: int = 0
    last_pass_s: float = 0.0


class ManifestCounter(SQLModel, table=True):
    """The last manifest version issued to a device (its agent refuses any at or below its
    own high-water mark). Keyed by name, outliving the device row."""

    __tablename__ = "manifest_counter"
    device: str = Field(primary_key=True)
    seq: int = Field(default=0, sa_type=BIG)
    updated_at: datetime = Field(default_factory=_now, sa_type=UTC_TIMESTAMP)


class IssuedCert(SQLModel, table=True):
    """A certificate the fleet CA issued: a device's, or the controller's. ``current`` is the
    one in use; a revoked one is on the revocation list the agents check."""

    __tablename__ = "issued_cert"
    serial: str = Field(primary_key=True)  # hex
    subject: str = Field(index=True)  # device name, or "edgefleet-controller"
    role: str  # device | controller
    not_after: datetime = Field(sa_type=UTC_TIMESTAMP)
    issued_at: datetime = Field(default_factory=_now, sa_type=UTC_TIMESTAMP)
    current: bool = True
    revoked_at: datetime | None = Field(default=None, sa_type=UTC_TIMESTAMP)
    revoke_reason: str = ""


class TrustDelivery(SQLModel, table=True):
    """The revocation list a device was last given (over SSH)."""

    __tablename__ = "trust_delivery"
    device: str = Field(primary_key=True)
    crl_number: int = Field(default=0, sa_type=BIG)
    delivered_at: datetime = Field(default_factory=_now, sa_type=UTC_TIMESTAMP)
