"""The ports a rollout drives: a device (its agent and its upload path) and the rollout log.

Services see only these Protocols and the dataclasses below; protobuf stays in the gRPC
adapter (``controller.adapters.device_link``) and SQLModel rows in the SQL adapter
(``controller.adapters.rollout_repo``). In-memory implementations (tests/unit/fakes.py) make
every branch of the step machine testable without a device.

Errors cross the port as ``controller.errors``: ``Unreachable`` (the link or the agent is
away; the step can be tried again later), ``TransferInterrupted`` (an upload stopped part-way,
resumable), ``AgentRefused`` with an ``ErrorKind`` (the agent said no, and why).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Protocol

from agent.contract import RevertCause
from controller.core.compat import AgentVersion
from controller.core.fanout import ChunkList
from controller.core.output_check import OutputSample
from controller.core.steps import Step


@dataclass(frozen=True)
class SlotView:
    """One model name's place on a device that holds several models (GetStore.slots)."""

    name: str
    active: str = ""
    previous: str = ""
    on_trial: bool = False
    trial_seconds_left: float = 0.0
    aliases: tuple[str, ...] = ()
    pinned: bool = False
    resident: bool = False
    memory_bytes: int = 0
    last_used_at: float = 0.0
    reverted: str = ""
    reverted_reason: str = ""
    reverted_cause: RevertCause = RevertCause.UNSPECIFIED


@dataclass(frozen=True)
class StoreView:
    """What a device's store holds (GetStore). An agent that holds several models reports
    one slot per model name; the single fields describe its most recent load (what an
    older agent, without slots, reports of its one model)."""

    active: str = ""
    previous: str = ""
    on_trial: bool = False
    trial_seconds_left: float = 0.0
    staged: str = ""
    blobs: frozenset[str] = frozenset()
    incoming_dir: str = ""
    disk_free_bytes: int = 0
    reverted: str = ""
    reverted_reason: str = ""
    reverted_cause: RevertCause = RevertCause.UNSPECIFIED
    slots: tuple[SlotView, ...] = ()
    memory_budget_bytes: int = 0

    def for_model(self, name: str) -> StoreView:
        """The store as the rollout of model ``name`` sees it: active, previous, trial and
        revert of that model's slot when the agent reports slots (an empty slot when the
        model is not there yet), else the single fields (an agent of one model)."""
        if not self.slots:
            return self
        slot = next((s for s in self.slots if s.name == name), SlotView(name))
        return replace(self, active=slot.active, previous=slot.previous,
                       on_trial=slot.on_trial, trial_seconds_left=slot.trial_seconds_left,
                       reverted=slot.reverted, reverted_reason=slot.reverted_reason,
                       reverted_cause=slot.reverted_cause)

    def others(self, name: str) -> tuple[SlotView, ...]:
        """The active models other than ``name`` (those a deploy beside it keeps)."""
        return tuple(s for s in self.slots if s.name != name and s.active)


@dataclass(frozen=True)
class FitView:
    """The device's preflight answer (CheckFit)."""

    fits: bool
    already_held: bool = False
    disk_free_bytes: int = 0
    disk_needed_bytes: int = 0
    memory_budget_bytes: int = 0
    reason: str = ""
    staged_bytes: int = 0
    staged_sha256: str = ""
    reclaimed_bytes: int = 0  # freed by the store to make room (unused blobs, idle uploads)


@dataclass(frozen=True)
class Uploaded:
    """What an upload did: the bytes the device acknowledged over all its attempts, and why
    each interrupted attempt stopped (it was resumed)."""

    bytes_sent: int
    interruptions: tuple[str, ...] = ()


@dataclass(frozen=True)
class ModelView:
    name: str
    variant: str
    sha256: str


@dataclass(frozen=True)
class Summary:
    """The timing summary of one generation on the device."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    ttft_ms: float = 0.0
    decode_tokens_per_s: float = 0.0
    joules_per_token: float = 0.0
    energy_meter: str = ""
    finish_reason: str = ""


@dataclass(frozen=True)
class Generation:
    text: str
    summary: Summary


@dataclass(frozen=True)
class Artifact:
    """One variant file as the rollout sends it."""

    model: str
    variant: str
    format: str
    sha256: str
    size_bytes: int
    path: str  # on the controller
    # format "lora": the base the adapter applies on (model is then "BASE+ADAPTER")
    base_sha256: str = ""

    @property
    def adapter(self) -> str:
        """The adapter's name for format "lora" ("" for a model)."""
        return self.model.partition("+")[2] if self.base_sha256 else ""

    @property
    def base_model(self) -> str:
        """The model requests go to: the base's name for format "lora", else the model."""
        return self.model.partition("+")[0] if self.base_sha256 else self.model


@dataclass(frozen=True)
class AdapterView:
    """The LoRA adapters a device holds for its active model (ListModels, format "lora")."""

    default: str = ""  # sha256 of the adapter requests run with when they name none
    trial: str = ""  # sha256 of the adapter on trial
    names: tuple[tuple[str, str], ...] = ()  # (name, sha256) of every adapter held


@dataclass(frozen=True)
class LoadOrder:
    """Everything the agent is told to load; the adapter signs it."""

    artifact: Artifact
    n_ctx: int
    memory_bytes: int
    trial: bool = True
    trial_seconds: int = 0
    placement: Placement | None = None  # None: an agent of one model (today's manifest)


@dataclass(frozen=True)
class Placement:
    """Where a model goes on an agent that holds several ("multi-model"): beside the others
    (its own slot) or instead of them (``replace``), the aliases it takes, pinned or not.
    Signed in the manifest as "aliases" (sorted), "replace", "pinned"."""

    aliases: tuple[str, ...] = ()
    replace: bool = False
    pinned: bool = False


@dataclass(frozen=True)
class PeerEndpoint:
    """A device's agent as the other devices of its site reach it."""

    name: str
    address: str  # host:port


@dataclass(frozen=True)
class PeerOrder:
    """Fetch ``artifact`` from the peers named (nearest first); the adapter signs it."""

    artifact: Artifact
    chunks: ChunkList
    receiver: str
    sources: tuple[PeerEndpoint, ...]
    rollout: str


@dataclass(frozen=True)
class Fetched:
    """What a fetch from peers did: complete or not (``failure`` says why), the verified
    bytes each peer delivered, what the device already had, the peers it dropped and why."""

    complete: bool
    received: tuple[tuple[str, int], ...] = ()
    resumed_bytes: int = 0
    dropped: tuple[str, ...] = ()
    failure: str = ""

    @property
    def from_peers(self) -> int:
        return sum(n for _, n in self.received)


@dataclass(frozen=True)
class Route:
    """Where a device gets its blob (the runner's site plan decides): from peers of its site,
    nearest first, or, with no peers, from the controller."""

    peers: tuple[PeerEndpoint, ...] = ()
    chunks: ChunkList | None = None
    serves_peers: bool = False  # its site reads from it while it receives: send in order
    note: str = ""  # how the plan placed it, for the step's reason


class DeviceLink(Protocol):
    """One device's agent and upload path, for the duration of one device's turn."""

    def capabilities(self) -> AgentVersion: ...  # GetVersion, or 0.1.0's for an old agent
    def store(self) -> StoreView: ...
    def check_fit(self, sha256: str, size_bytes: int, memory_bytes: int,
                  reclaim: bool = False, slot: str = "", replace: bool = False
                  ) -> FitView: ...  # slot: the model name it loads into (see the proto)
    def upload(self, artifact: Artifact, fit: FitView, incoming_dir: str,
               memory_bytes: int, sequential: bool = False) -> Uploaded: ...
    # raises TransferInterrupted (resumable; .sent acknowledged) or UploadRefused (disk full);
    # ``sequential``: one stream, front to back, so peers can read it as it arrives
    def fetch_from_peers(self, order: PeerOrder) -> Fetched: ...
    # raises Unreachable when the device itself goes away; a fetch no peer could finish
    # returns complete=False (the device keeps its verified prefix)
    def stage(self, sha256: str) -> int: ...
    # the LoRA adapters held (for the base ``base_sha256`` when given)
    def adapters(self, base_sha256: str = "") -> AdapterView: ...
    def load(self, order: LoadOrder) -> None: ...
    def commit(self, sha256: str) -> None: ...
    def abort_trial(self, sha256: str, reason: str) -> ModelView | None: ...
    def model_serving(self) -> bool: ...
    def generate(self, prompt: str, max_tokens: int, model: str = "") -> Generation: ...
    # ``model``: a name or alias on an agent of several models ("": its default model)
    def verify_output(self, prompt: str, max_tokens: int, sha256: str = "") -> OutputSample: ...
    # ``sha256``: the model to check ("": the active one)
    def close(self) -> None: ...


LinkFactory = Callable[[str], DeviceLink]  # device name -> an open link (raises Unreachable)


@dataclass
class DeviceJob:
    """One device's part of a rollout: what it gets and where it stands."""

    device: str
    position: int  # in rollout order
    wave: int
    step: Step
    artifact: Artifact | None  # None: nothing to send (skipped, or failed at planning)
    n_ctx: int = 0
    memory_bytes: int = 0
    choice: str = ""  # why this variant (the planner's words)
    reason: str = ""  # why the device is at ``step``
    hint: str = ""
    bytes_sent: int = 0
    model_failed: bool = False
    upload_attempts: int = 0
    predicted: dict[str, float] = field(default_factory=dict)  # tokens_per_s, ttft_ms
    site: str = ""  # the site it shares blobs with (controller.core.fanout); "" for none
    bytes_from_peers: int = 0  # verified bytes it received from peers (bytes_sent: from us)
    peer_bytes: dict[str, int] = field(default_factory=dict)  # per peer
    # its store held the artifact when the rollout was planned: a source for its site from
    # the start (kept with the rollout, so a resumed one knows it too)
    held: bool = False

    @property
    def sha256(self) -> str:
        return self.artifact.sha256 if self.artifact else ""


@dataclass
class Rollout:
    """A rollout as persisted: its policy and where it stands."""

    id: str
    model: str
    status: str  # running | paused | pending | completed | halted | aborted
    policy: dict[str, object]
    waves: list[int]  # devices per wave (contacted devices only)
    wave: int = 0  # the wave running or next to run
    approved_wave: int = 0  # with --wait-approval: the highest wave allowed to start
    next_wave_at: datetime | None = None
    controller: str = ""  # host:pid of the process driving it
    heartbeat_at: datetime | None = None
    created_at: datetime | None = None
    finished_at: datetime | None = None
    abort_requested: bool = False
    reason: str = ""


class DevicesBusy(Exception):
    """Some devices are held by another rollout: ``holders`` maps device -> rollout id."""

    def __init__(self, holders: dict[str, str]) -> None:
        super().__init__(", ".join(f"{d} ({r})" for d, r in holders.items()))
        self.holders = holders


class RolloutLog(Protocol):
    """The one writer of rollout state; every method commits before it returns."""

    def create(self, rollout: Rollout, jobs: list[DeviceJob]) -> None:
        """Record a new rollout and take its devices' leases, all or nothing (DevicesBusy)."""
        ...

    def record(self, rollout: str, job: DeviceJob,
               restored: ModelView | None = None) -> None:
        """``job`` moved to ``job.step``: persist it (and the device's state when its active
        model changed: committed, or rolled back to ``restored``)."""
        ...

    def update(self, rollout: Rollout) -> None: ...
    def heartbeat(self, rollout: str, controller: str) -> bool:
        """Extend the liveness of the process driving ``rollout``; False if another process
        took it over."""
        ...

    def claim(self, rollout: str, controller: str, stale_after_s: float) -> Rollout:
        """Take over a rollout whose driver is gone (heartbeat older than ``stale_after_s``)
        or which waits (paused, pending); raises RolloutBusy when it is driven live."""
        ...

    def load(self, rollout: str) -> tuple[Rollout, list[DeviceJob]]: ...
    def release(self, rollout: str, devices: list[str]) -> None: ...
    def abort_requested(self, rollout: str) -> bool: ...


class RolloutBusy(Exception):
    """The rollout is driven by a live process (``controller``)."""

    def __init__(self, rollout: Rollout) -> None:
        super().__init__(rollout.id)
        self.rollout = rollout
