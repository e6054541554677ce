"""In-memory implementations of the rollout's ports (controller.services.ports), for unit tests
of every branch of the step machine and the runner. They behave as the real agent and
database do where the step machine relies on it (a trial, a revert, a lease), and fail where
a test scripts them to."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from agent.contract import AGENT_CAPABILITIES, ErrorKind, RevertCause
from controller.core.compat import AgentVersion
from controller.core.output_check import OutputSample
from controller.errors import AgentRefused, TransferInterrupted, Unreachable
from controller.services.ports import (
    AdapterView,
    Artifact,
    DeviceJob,
    DevicesBusy,
    Fetched,
    FitView,
    Generation,
    LoadOrder,
    ModelView,
    PeerOrder,
    Rollout,
    RolloutBusy,
    StoreView,
    Summary,
    Uploaded,
)


def refused(kind: ErrorKind, detail: str = "no") -> AgentRefused:
    return AgentRefused(detail, kind=kind, detail=detail)


@dataclass
class FakeDevice:
    """A device's agent and store. ``fail[method]`` is a list of exceptions raised by the next
    calls of that method (then it works); ``tokens`` is what a generation produces."""

    name: str
    active: ModelView | None = None
    previous: ModelView | None = None
    on_trial: bool = False
    blobs: set[str] = field(default_factory=set)
    partial: dict[str, int] = field(default_factory=dict)  # sha -> bytes of an upload
    reverted: str = ""
    reverted_cause: RevertCause = RevertCause.UNSPECIFIED
    reverted_reason: str = ""
    fits: bool = True
    serving: bool = True
    tokens: int = 4
    finite: bool = True  # the model's logits (False: NaN weights)
    fail: dict[str, list[Exception]] = field(default_factory=dict)
    calls: list[str] = field(default_factory=list)
    sent: int = 0  # bytes received over all uploads
    committed: list[str] = field(default_factory=list)
    agent: AgentVersion = field(default_factory=lambda: AgentVersion(
        "0.2.0", 2, frozenset(c.value for c in AGENT_CAPABILITIES), 0.0))
    sequential: list[bool] = field(default_factory=list)  # each upload: in order for peers?
    fit_slots: list[tuple[str, bool]] = field(default_factory=list)  # each check_fit's slot
    fetch_orders: list[PeerOrder] = field(default_factory=list)
    fleet: FakeFleet | None = None  # the devices it can fetch from (set by FakeFleet)
    held_adapters: AdapterView = field(default_factory=AdapterView)  # for its active model

    def _call(self, method: str) -> None:
        self.calls.append(method)
        queue = self.fail.get(method)
        if queue:
            raise queue.pop(0)

    # DeviceLink
    def capabilities(self) -> AgentVersion:
        self._call("capabilities")
        return self.agent

    def store(self) -> StoreView:
        self._call("store")
        return StoreView(active=self.active.sha256 if self.active else "",
                         previous=self.previous.sha256 if self.previous else "",
                         on_trial=self.on_trial, blobs=frozenset(self.blobs),
                         incoming_dir="/in", disk_free_bytes=10**9, reverted=self.reverted,
                         reverted_reason=self.reverted_reason,
                         reverted_cause=self.reverted_cause)

    def check_fit(self, sha256: str, size_bytes: int, memory_bytes: int,
                  reclaim: bool = False, slot: str = "", replace: bool = False) -> FitView:
        self._call("check_fit")
        self.fit_slots.append((slot, replace))
        return FitView(fits=self.fits, already_held=sha256 in self.blobs,
                       reason="" if self.fits else "disk: needs 10 MiB, 1 MiB free",
                       staged_bytes=self.partial.get(sha256, 0))

    def upload(self, artifact: Artifact, fit: FitView, incoming_dir: str,
               memory_bytes: int, sequential: bool = False) -> Uploaded:
        self._call("upload")
        self.sequential.append(sequential)
        start = self.partial.get(artifact.sha256, 0)
        self.partial[artifact.sha256] = artifact.size_bytes
        self.sent += artifact.size_bytes - start
        return Uploaded(artifact.size_bytes - start)

    def fetch_from_peers(self, order: PeerOrder) -> Fetched:
        """Reads from the fleet's devices named, nearest first, as the agent does: a peer
        that is away is skipped, one listed in ``bad_peers`` sends a bad chunk (dropped, and
        what it sent before that counts), one not holding the blob has nothing; a fetch no
        peer can finish keeps the verified prefix and says why."""
        self._call("fetch_from_peers")
        self.fetch_orders.append(order)
        assert self.fleet is not None, "fetch_from_peers needs a FakeFleet"
        art = order.artifact
        have = self.partial.get(art.sha256, 0)
        resumed, received, dropped, why = have, [], [], []
        for source in order.sources:
            if have >= art.size_bytes:
                break
            peer = self.fleet.devices.get(source.name)
            if peer is None or source.name in self.fleet.away:
                why.append(f"{source.name}: cannot connect")
                continue
            if art.sha256 not in peer.blobs and not peer.partial.get(art.sha256):
                why.append(f"{source.name}: nothing yet")
                continue
            upto = art.size_bytes if art.sha256 in peer.blobs else peer.partial[art.sha256]
            if source.name in self.fleet.bad_peers:
                good = min(upto, have + self.fleet.bad_peers[source.name])
                received.append((source.name, good - have))
                have = good
                dropped.append(f"{source.name}: sent a bad chunk")
                continue
            received.append((source.name, upto - have))
            have = upto
        self.partial[art.sha256] = have
        done = have >= art.size_bytes
        return Fetched(done, tuple(received), resumed, tuple(dropped),
                       "" if done else "; ".join(why + dropped) or "no peer has it")

    def stage(self, sha256: str) -> int:
        try:
            self._call("stage")
        except AgentRefused as exc:  # the agent deletes bytes that do not hash right
            if exc.kind is ErrorKind.CHECKSUM_MISMATCH:
                self.partial.pop(sha256, None)
            raise
        if sha256 not in self.partial and sha256 not in self.blobs:
            raise refused(ErrorKind.NOT_FOUND, "not staged")
        self.partial.pop(sha256, None)
        self.blobs.add(sha256)
        return 1

    def adapters(self, base_sha256: str = "") -> AdapterView:
        self._call("adapters")
        return self.held_adapters  # whole adapter rollouts run against real agents (tests/e2e)

    def load(self, order: LoadOrder) -> None:
        art = order.artifact
        try:
            self._call("load")
        except AgentRefused as exc:  # a corrupt blob is quarantined: no longer held
            if exc.kind in (ErrorKind.CHECKSUM_MISMATCH, ErrorKind.BLOB_CORRUPT):
                self.blobs.discard(art.sha256)
            raise
        if art.sha256 not in self.blobs:
            raise refused(ErrorKind.NOT_FOUND, "blob not in the store")
        if self.active and self.active.sha256 != art.sha256 and not self.on_trial:
            self.previous = self.active
        self.active = ModelView(art.model, art.variant, art.sha256)
        self.on_trial = order.trial

    def commit(self, sha256: str) -> None:
        self._call("commit")
        if not self.active or self.active.sha256 != sha256:
            raise refused(ErrorKind.NOT_FOUND, "not active")
        self.on_trial = False
        self.committed.append(sha256)

    def abort_trial(self, sha256: str, reason: str) -> ModelView | None:
        self._call("abort_trial")
        if not self.on_trial or not self.active or self.active.sha256 != sha256:
            raise refused(ErrorKind.NOT_ON_TRIAL, "not on trial")
        self.give_up(reason, RevertCause.ABORTED)
        return self.active

    def give_up(self, reason: str, cause: RevertCause) -> None:
        """What the agent does by itself (crash, deadline, restart) or on AbortTrial."""
        assert self.active is not None
        self.reverted, self.reverted_cause, self.reverted_reason = (self.active.sha256, cause,
                                                                    reason)
        self.active, self.previous, self.on_trial = self.previous, None, False

    def model_serving(self) -> bool:
        self._call("model_serving")
        return self.serving and self.active is not None

    def generate(self, prompt: str, max_tokens: int, model: str = "") -> Generation:
        self._call("generate")
        return Generation("x" * self.tokens, Summary(
            prompt_tokens=4, completion_tokens=self.tokens, ttft_ms=10.0,
            decode_tokens_per_s=100.0, energy_meter="estimated", joules_per_token=0.1,
            finish_reason="length"))

    def verify_output(self, prompt: str, max_tokens: int, sha256: str = "") -> OutputSample:
        self._call("verify_output")
        return OutputSample(finite=self.finite, prompt_tokens=4, mean_logprob=-2.0,
                            tokens=(1, 2, 3), margins=(1.0, 1.0, 1.0),
                            text="abc" if self.finite else "")

    def close(self) -> None:
        pass


class FakeFleet:
    """Devices by name; ``connect`` is the LinkFactory. ``away`` devices are unreachable."""

    def __init__(self, devices: list[FakeDevice]) -> None:
        self.devices = {d.name: d for d in devices}
        self.away: set[str] = set()
        self.bad_peers: dict[str, int] = {}  # peer -> good bytes it sends before a bad chunk
        for d in devices:
            d.fleet = self

    def connect(self, name: str) -> FakeDevice:
        if name in self.away:
            raise Unreachable(f"agent at {name} not reachable", hint="is it running?")
        return self.devices[name]


class MemoryRolloutLog:
    def __init__(self) -> None:
        self.rollouts: dict[str, Rollout] = {}
        self.jobs: dict[str, dict[str, DeviceJob]] = {}
        self.leases: dict[str, str] = {}
        self.history: list[tuple[str, str]] = []  # (device, step) as recorded
        self.restored: dict[str, ModelView | None] = {}

    def create(self, rollout: Rollout, jobs: list[DeviceJob]) -> None:
        busy = {j.device: self.leases[j.device] for j in jobs if j.device in self.leases}
        if busy:
            raise DevicesBusy(busy)
        self.rollouts[rollout.id] = rollout
        self.jobs[rollout.id] = {j.device: replace(j) for j in jobs}
        for j in jobs:
            self.leases[j.device] = rollout.id

    def record(self, rollout: str, job: DeviceJob, restored: ModelView | None = None) -> None:
        self.jobs[rollout][job.device] = replace(job)
        self.history.append((job.device, job.step.value))
        if restored is not None:
            self.restored[job.device] = restored

    def update(self, rollout: Rollout) -> None:
        keep = self.rollouts[rollout.id].abort_requested
        self.rollouts[rollout.id] = replace(rollout,
                                            abort_requested=rollout.abort_requested or keep)

    def heartbeat(self, rollout: str, controller: str) -> bool:
        return self.rollouts[rollout].controller == controller

    def claim(self, rollout: str, controller: str, stale_after_s: float) -> Rollout:
        current = self.rollouts[rollout]
        if current.status == "running" and current.controller not in ("", controller):
            raise RolloutBusy(current)
        self.rollouts[rollout] = replace(current, controller=controller)
        return self.rollouts[rollout]

    def load(self, rollout: str) -> tuple[Rollout, list[DeviceJob]]:
        return self.rollouts[rollout], [replace(j) for j in self.jobs[rollout].values()]

    def release(self, rollout: str, devices: list[str]) -> None:
        for device in devices:
            if self.leases.get(device) == rollout:
                del self.leases[device]

    def abort_requested(self, rollout: str) -> bool:
        return self.rollouts[rollout].abort_requested


__all__ = ["FakeDevice", "FakeFleet", "MemoryRolloutLog", "TransferInterrupted", "refused"]
