"""What one contact with an agent brought back, as the collector hands it to storage."""

from __future__ import annotations

from dataclasses import dataclass, field

from controller.core.device_models import DeviceModel

CONTACT_TIMEOUT_S = 5.0  # the default for the whole contact with one device


@dataclass(frozen=True)
class RequestIn:
    seq: int
    ts: float
    sha256: str
    variant: str
    ttft_ms: float
    total_ms: float
    prompt_tokens: int
    completion_tokens: int
    decode_tps: float
    prefill_tps: float
    outcome: str
    energy_j: float
    meter: str
    peak_rss_bytes: int
    model: str = ""  # the model name that served it (several models per device)
    adapter: str = ""  # the LoRA adapter applied ("": the base alone)
    load_wait_ms: float = 0.0  # waited for an on-demand load first


@dataclass(frozen=True)
class SampleIn:
    seq: int
    ts: float
    interval_s: float
    cpu_percent: float
    ram_used_bytes: int
    power_w: float
    energy_j: float
    meter: str
    temperatures_c: dict[str, float]
    throttled: bool
    throttle_reasons: tuple[str, ...]
    cpu_freq_mhz: float
    worker_crashes: int
    active_sha256: str


@dataclass(frozen=True)
class ModelSeen:
    sha256: str
    name: str
    variant: str


@dataclass(frozen=True)
class LiveState:
    """The agent's answer about now: what it runs and its live device sample."""

    active: ModelSeen | None
    previous: ModelSeen | None
    on_trial: bool
    worker_crashes: int
    requests_total: int
    power_w: float | None
    energy_meter: str
    cpu_percent: float | None
    ram_used_bytes: int
    ram_total_bytes: int
    max_temp_c: float | None
    state: str = ""  # deployed | on trial | drifted | serving | idle (the collector's verdict)
    drift: str = ""  # what it runs instead, when drifted


@dataclass(frozen=True)
class Fetched:
    device: str
    ts: float  # when the contact ended
    seconds: float  # how long it took
    epoch: str
    requests: list[RequestIn]
    sample_epoch: str
    samples: list[SampleIn]
    sample_every_s: float
    live: LiveState
    complete: bool = True  # False: more was waiting than one contact may read
    # every active model it runs (controller.core.device_models); None: not read this time
    models: tuple[DeviceModel, ...] | None = None


@dataclass(frozen=True)
class Unreached:
    device: str
    ts: float
    seconds: float
    error: str


@dataclass(frozen=True)
class Cursors:
    """What the database says was read last from a device's two logs."""

    epoch: str = ""
    last_seq: int = 0
    sample_epoch: str = ""
    last_sample_seq: int = 0
    active: ModelSeen | None = None  # as ListModels last said: asked again when it changes
    previous: ModelSeen | None = None


@dataclass
class Stored:
    """What one write of a contact changed, for the exporter and the pass report."""

    device: str
    requests: list[RequestIn] = field(default_factory=list)
    samples: list[SampleIn] = field(default_factory=list)
    gaps: list[str] = field(default_factory=list)  # kinds opened
    state: str = ""
