"""`fleet deploy`: plan, push, verify, load, health-check, roll back on failure.

Per device, in parallel with bounded concurrency; one dead device never stops the others.
Canaries first: the devices of each artifact wait until ``--canary`` of them run it healthy,
and no new device starts once ``--max-failures`` devices failed to load or run the new model
(controller.core.rollout decides; this module only executes).
The database changes a device's state only where its active model changed (deployed or
rolled back); every device's outcome goes to the rollout's log (`fleet rollouts`).
"""

from __future__ import annotations

import contextlib
import signal
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from datetime import datetime, timezone

from agent.rpc import agent_pb2 as pb
from controller.adapters.agent_client import GrpcAgentClient
from controller.adapters.tables import Deployment, Device
from controller.artifacts import LocalArtifact
from controller.core.gates import Gates
from controller.core.models import ModelSpec
from controller.core.rollout import Evidence, RolloutGate, RolloutPolicy, failure_budget
from controller.core.select import Request
from controller.errors import (
    AgentRefused,
    DeviceError,
    FleetError,
    Unreachable,
    UsageError,
)
from controller.services.context import Fleet
from controller.services.health_gate import health_check, reference_for
from controller.services.planning import DevicePlan, plan
from controller.services.uploading import UploadTally, send

# Refusals of LoadModel that say the model cannot run there (the agent's error classes, sent in
# trailing metadata), as opposed to the device, the link or our configuration.
MODEL_REFUSALS = frozenset({"NotForThisMachine", "InsufficientMemory", "WorkerFailed",
                            "GenerationFailed"})


@dataclass(frozen=True)
class DeployOptions:
    concurrency: int = 4
    retries: int = 3  # per device, for an interrupted upload (each retry resumes)
    backoff_s: float = 1.0  # doubled after each retry
    limit_bytes_per_s: float = 0.0  # per device upload limit; 0 = none
    streams: int = 4  # SFTP channels for files of PARALLEL_MIN_BYTES and more
    canary: int = 1  # devices per artifact that must run it healthy before its others start
    max_failures: str = "1"  # model failures after which no new device starts: "3", "10%";
    # "0" = never stop
    max_joules_per_token: float = 0.0  # a health gate on the measured energy; 0 = none
    stage_only: bool = False  # push and verify, keep for a later deploy; activate nothing
    progress: Callable[[str, int, int], None] = lambda device, done, total: None


@dataclass(frozen=True)
class Outcome:
    device: str
    status: str  # deployed | unchanged | staged | skipped | failed | rolled-back | halted
    variant: str
    reason: str
    hint: str = ""
    bytes_sent: int = 0
    seconds: float = 0.0
    model_failed: bool = False  # the model was tried here and could not load or run

    @property
    def ok(self) -> bool:
        return self.status in ("deployed", "unchanged", "staged", "skipped")

    @property
    def evidence(self) -> Evidence:
        if self.status in ("deployed", "unchanged"):
            return Evidence.HEALTHY
        if self.status == "rolled-back" or self.model_failed:
            return Evidence.MODEL_FAILED
        return Evidence.NONE


@dataclass(frozen=True)
class DeployReport:
    rollout: str
    model: str
    plans: list[DevicePlan]
    outcomes: list[Outcome]

    @property
    def failed(self) -> list[Outcome]:
        return [o for o in self.outcomes if not o.ok]


def signed_load_request(fleet: Fleet, sha256: str, size_bytes: int, name: str, variant: str,
                        fmt: str, n_ctx: int, memory: int = 0,
                        trial: bool = False) -> pb.LoadModelRequest:
    """A load request with a manifest signed by the controller's key, which an enrolled
    agent verifies before it touches the blob. With ``trial`` the agent goes back to its
    previous model by itself if it restarts, or the model's runtime crashes, before
    CommitModel."""
    manifest, signature = fleet.pki.sign_manifest({
        "sha256": sha256, "size_bytes": size_bytes, "name": name, "variant": variant,
        "format": fmt, "issued_at": int(time.time())})
    return pb.LoadModelRequest(
        sha256=sha256, name=name, variant=variant, format=fmt, n_ctx=n_ctx,
        size_bytes=size_bytes, estimated_memory_bytes=memory, manifest=manifest,
        manifest_signature=signature, trial=trial)


def deploy_one(fleet: Fleet, model: ModelSpec, device_plan: DevicePlan,
               artifacts: dict[str, LocalArtifact], rollout: str,
               options: DeployOptions | None = None, gates: Gates | None = None) -> Outcome:
    options = options or DeployOptions()
    gates = gates or Gates()
    device = device_plan.device
    choice = device_plan.choice
    started = time.monotonic()
    if device_plan.error is not None:
        return Outcome(device.name, "failed", "", device_plan.error.message,
                       device_plan.error.hint)
    if choice is None or choice.chosen is None:
        return Outcome(device.name, "skipped", "", choice.reason if choice else "no profile")
    variant = choice.chosen.variant.name
    art = artifacts[variant]
    tally = UploadTally()  # bytes the device acknowledged, reported on every outcome

    def outcome(status: str, reason: str, hint: str = "", sent: int = 0,
                model_failed: bool = False) -> Outcome:
        if tally.interruptions and status != "failed":
            n = len(tally.interruptions)
            reason += (f"; the upload was interrupted {n} time{'s' if n > 1 else ''} and "
                       f"resumed ({tally.interruptions[-1]})")
        return Outcome(device.name, status, variant, reason, hint,
                       bytes_sent=max(sent, tally.acked),
                       seconds=time.monotonic() - started, model_failed=model_failed)

    try:
        with fleet.client(device) as client:
            store = client.get_store()
            on_trial = store.active_sha256 == art.sha256 and store.active_on_trial
            memory = choice.chosen.memory.total
            # the agent confirms its copy is intact (its fingerprint, or a fresh hash): a
            # corrupt one is quarantined there and sent again here
            fit = client.check_fit(art.sha256, art.size_bytes, memory, reclaim=True)
            if store.active_sha256 == art.sha256 and fit.already_held and (
                    not on_trial or options.stage_only):
                return outcome("unchanged", "already active" + (" (on trial)" if on_trial
                                                                else ""))
            if not fit.already_held:
                on_trial = False
                store = client.get_store()
            models = client.list_models()
            # what to go back to: the active model, or, when the target itself is already
            # active on trial (an earlier deploy never confirmed it), the one before it
            previous = next((m for m in models if m.active != on_trial), None)
            sent = 0
            if not on_trial:
                if not fit.fits:
                    return outcome("failed",
                                   f"preflight refused before sending anything: {fit.reason}",
                                   "`fleet plan` shows a variant that fits; free disk space "
                                   "or pick a smaller variant with --prefer speed")
                sent = send(fleet, client, device, art, fit, store.incoming_dir, memory,
                            options, tally)
                if options.stage_only:
                    client.stage_model(art.sha256)
                    return outcome("staged", "verified on the device and kept for a later "
                                   f"deploy; {choice.reason}", sent=sent)
                request = signed_load_request(
                    fleet, art.sha256, art.size_bytes, model.name, variant,
                    choice.chosen.variant.format, choice.ctx, memory, trial=True)
                try:
                    _load_resending_once(fleet, client, device, art, request,
                                         store.incoming_dir, options, tally)
                    sent = max(sent, tally.acked)
                except AgentRefused as exc:
                    if exc.kind not in MODEL_REFUSALS:
                        raise
                    return outcome("failed", "could not load it, kept its current model: "
                                   + exc.detail, exc.hint, sent, True)
            try:
                problem, measured = health_check(client, model.arch.is_language_model, gates,
                                                 reference_for(art.path, art.sha256))
            except Unreachable as exc:
                back = f"{previous.variant}" if previous else "no model"
                return outcome("failed", f"the agent went away during the health check "
                               f"({exc.detail}); the model is on trial, so the "
                               f"device goes back to {back} when its agent restarts",
                               exc.hint, sent, True)
            if problem:
                return _roll_back(fleet, client, device, model, variant, art, previous,
                                  problem, rollout, max(sent, tally.acked), started)
            try:
                client.commit_model(art.sha256)
            except FleetError as exc:
                back = f"{previous.variant}" if previous else "no model"
                return outcome("failed", f"healthy but not confirmed ({exc.detail}); the "
                               f"device goes back to {back} if its agent restarts first",
                               "deploy again to confirm it", sent)
            _record(fleet, device, model.name, variant, art, "active", choice.reason, rollout,
                    sent)
            if device_plan.probed_json:
                fleet.inventory.update_device(device.name, probed_json=device_plan.probed_json)
            reason = ("confirmed the model an earlier deploy left on trial; " if on_trial
                      else "") + choice.reason + (f"; {measured}" if measured else "")
            return outcome("deployed", reason, sent=sent)
    except FleetError as exc:
        return outcome("failed", exc.detail, exc.hint)



def _load_resending_once(fleet: Fleet, client: GrpcAgentClient, device: Device,
                         art: LocalArtifact, request: pb.LoadModelRequest, incoming_dir: str,
                         options: DeployOptions, tally: UploadTally) -> None:
    """LoadModel; when the device finds the bytes corrupt (DATA_LOSS: they arrived corrupt
    and were deleted, or its stored copy went bad and was quarantined) the file is sent once
    more and loaded again. Bytes that go bad twice in a row are the device's disk, not the
    model: that second refusal is raised as is (not a model failure)."""
    try:
        client.load_model(request)
        return
    except AgentRefused as exc:
        if exc.code != "DATA_LOSS":
            raise
        first = exc.detail
    fit = client.check_fit(art.sha256, art.size_bytes, request.estimated_memory_bytes,
                           reclaim=True)
    if not fit.already_held and not fit.fits:
        raise DeviceError(f"{first}; sending it again does not fit: {fit.reason}",
                          hint="free space on the device, or deploy a smaller variant")
    send(fleet, client, device, art, fit, incoming_dir, request.estimated_memory_bytes,
         options, tally)
    client.load_model(request)


def _roll_back(fleet: Fleet, client: GrpcAgentClient, device: Device, model: ModelSpec,
               variant: str, art: LocalArtifact, previous: pb.ModelInfo | None, problem: str,
               rollout: str, sent: int, started: float) -> Outcome:
    store = client.get_store()
    if store.reverted_sha256 == art.sha256 and not store.active_on_trial and (
            store.active_sha256 == (previous.sha256 if previous else "")):
        what = "the agent had already gone back to " + (
            previous.variant if previous else "no model")
    elif previous is not None:
        client.load_model(signed_load_request(
            fleet, previous.sha256, previous.size_bytes, previous.name, previous.variant,
            previous.format, previous.n_ctx))
        what = f"restored {previous.variant}"
    else:
        client.unload_model()
        what = "unloaded"
    _record(fleet, device, model.name, variant, art, "rolled-back", problem, rollout, sent,
            restored=previous)
    return Outcome(device.name, "rolled-back", variant, f"health check failed: {problem}; {what}",
                   bytes_sent=sent, seconds=time.monotonic() - started)


def _record(fleet: Fleet, device: Device, model: str, variant: str, art: LocalArtifact,
            status: str, reason: str, rollout: str, sent: int,
            restored: pb.ModelInfo | None = None) -> None:
    now = datetime.now(timezone.utc)
    fleet.inventory.record_deployment(Deployment(
        rollout=rollout, device=device.name, model=model, variant=variant, sha256=art.sha256,
        status=status, reason=reason, bytes_sent=sent, finished_at=now))
    if status == "active":
        fleet.inventory.update_device(device.name, state="deployed", model=model,
                                      variant=variant, sha256=art.sha256, last_seen=now)
    else:
        fleet.inventory.update_device(
            device.name, state="rolled-back", last_seen=now,
            model=restored.name if restored else "", variant=restored.variant if restored else "",
            sha256=restored.sha256 if restored else "")


def deploy(fleet: Fleet, model: ModelSpec, devices: list[Device], request: Request,
           options: DeployOptions | None = None,
           on_outcome: Callable[[Outcome], None] = lambda o: None) -> DeployReport:
    options = options or DeployOptions()
    if not 1 <= options.concurrency <= 64:
        raise UsageError("--concurrency must be 1..64", hint="the default is 4")
    if not 0 <= options.retries <= 20 or options.limit_bytes_per_s < 0 or not (
            1 <= options.streams <= 16):
        raise UsageError("--retries must be 0..20, --bwlimit >= 0, --streams 1..16",
                         hint="e.g. --retries 3 --bwlimit 10 --streams 4")
    if options.max_joules_per_token < 0:
        raise UsageError("--max-j-per-token must be 0 (no gate) or more",
                         hint="e.g. --max-j-per-token 0.5")
    if options.canary < 0:
        raise UsageError("--canary must be 0 or more", hint="--canary 0 deploys to all at once")
    try:
        failure_budget(options.max_failures, 0)
    except ValueError:
        raise UsageError(f"--max-failures {options.max_failures!r} is neither a count nor a "
                         "percentage", hint="e.g. --max-failures 1, --max-failures 10%, or 0 "
                         "to never stop") from None
    plans = plan(fleet, model, devices, request)
    needed = {p.choice.chosen.variant.name for p in plans if p.choice and p.choice.chosen}
    spec_by_name = {v.name: v for v in model.variants}
    # Hash every file to be sent before any device is touched: a corrupt source stops here.
    artifacts = {name: fleet.artifacts.verify(model, spec_by_name[name]) for name in needed}
    rollout = uuid.uuid4().hex[:12]
    # the measured prompt stays well inside the context whatever --prompt-tokens says
    gates = Gates(request.min_tokens_per_s, request.max_ttft_ms, options.max_joules_per_token,
                  max(1, min(request.prompt_tokens, request.ctx // 2)))
    receives = [_artifact_of(p, artifacts) for p in plans]
    budget = failure_budget(options.max_failures, sum(1 for a in receives if a))
    # staging runs no model: nothing to wait for, no model failure to stop on
    policy = (RolloutPolicy(0, 0) if options.stage_only
              else RolloutPolicy(options.canary, budget))
    gate = RolloutGate(receives, policy)
    outcomes: list[Outcome | None] = [None] * len(plans)
    with _ctrl_c_stops(gate), ThreadPoolExecutor(
            max_workers=max(1, min(options.concurrency, len(plans)))) as pool:
        running: dict[Future[Outcome], int] = {}
        while True:
            for i in gate.startable(options.concurrency - len(running)):
                gate.start(i)
                running[pool.submit(deploy_one, fleet, model, plans[i], artifacts, rollout,
                                    options, gates)] = i
            if not running:
                break
            finished, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in finished:
                i = running.pop(future)
                outcome = future.result()
                gate.finish(i, outcome.evidence)
                outcomes[i] = outcome
                _log(fleet, rollout, model.name, outcome, gate.artifacts[i])
                on_outcome(outcome)
    for i in gate.waiting():
        outcome = _halted(plans[i], [outcomes[j] for j in gate.failures], gate.stopped)
        outcomes[i] = outcome
        _log(fleet, rollout, model.name, outcome, gate.artifacts[i])
        on_outcome(outcome)
    return DeployReport(rollout, model.name, plans, [o for o in outcomes if o is not None])


@contextlib.contextmanager
def _ctrl_c_stops(gate: RolloutGate) -> Iterator[None]:
    """The first Ctrl-C stops the rollout: the devices in flight finish (a device is never
    left half-done), no other starts. A second one gives up waiting."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(signum: int, frame: object) -> None:
        if gate.stopped:
            raise KeyboardInterrupt
        gate.stop()

    previous = signal.signal(signal.SIGINT, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous if previous is not None else signal.SIG_DFL)


def _log(fleet: Fleet, rollout: str, model: str, outcome: Outcome, sha256: str) -> None:
    """The rollout's log keeps every device's outcome; deployed and rolled-back ones were
    recorded with the device's new state already."""
    if outcome.status in ("deployed", "rolled-back"):
        return
    reason = outcome.reason + (f" (hint: {outcome.hint})" if outcome.hint else "")
    fleet.inventory.record_deployment(Deployment(
        rollout=rollout, device=outcome.device, model=model, variant=outcome.variant,
        sha256=sha256, status=outcome.status, reason=reason, bytes_sent=outcome.bytes_sent,
        finished_at=datetime.now(timezone.utc)))


def _artifact_of(p: DevicePlan, artifacts: dict[str, LocalArtifact]) -> str:
    if p.error is not None or p.choice is None or p.choice.chosen is None:
        return ""
    return artifacts[p.choice.chosen.variant.name].sha256


def _halted(p: DevicePlan, failures: list[Outcome | None], interrupted: bool) -> Outcome:
    chosen = p.choice.chosen if p.choice else None
    names = ", ".join(f.device for f in failures if f is not None)
    why = ("the deploy was interrupted; the devices in flight finished" if interrupted else
           f"the rollout stopped after the new model failed on {names}")
    return Outcome(
        p.device.name, "halted", chosen.variant.name if chosen else "",
        f"not started: {why}",
        hint="this device keeps its current model; deploy again to go on" if interrupted else
        "this device keeps its current model; deploy again once the failed devices' reason "
        "is dealt with, or pass --max-failures 0 to go on regardless")
