"""One device's turn in a rollout: an explicit step machine (controller.core.steps).

Each handler does one step against the device and returns the next; every move is written
to the rollout log before the next step starts (``RolloutLog.record``, the one writer), so a
controller killed at any point leaves the log saying where each device stood. On entry (a
first turn or a resume) the device is asked where it really stands (``_reconcile``): what it
already holds is never sent again, a model left on trial is checked and committed, a model
the device gave up while nobody watched is judged by why it was given up.

The device owns its trial: the model is loaded with a deadline, committed only after the
health gate passes, and given up by the agent itself (``AbortTrial``, or the deadline) to its
own previous model, never one the controller names from memory.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field

from agent.contract import MODEL_REFUSALS, ErrorKind, RevertCause
from controller import failpoints
from controller.core import compat
from controller.core.compat import AgentVersion
from controller.core.gates import Gates
from controller.core.output_check import Reference
from controller.core.steps import Step, is_final
from controller.errors import (
    AgentRefused,
    FleetError,
    TransferInterrupted,
    Unreachable,
    UploadRefused,
)
from controller.services import adapter_step, placement
from controller.services.health_gate import health_check
from controller.services.peer_step import fetch_from_peers, sending
from controller.services.ports import (
    Artifact,
    DeviceJob,
    DeviceLink,
    LinkFactory,
    LoadOrder,
    ModelView,
    Placement,
    Route,
)

# a blob that arrives corrupt, or is found corrupt at load, is sent once more
UPLOAD_ATTEMPTS = 2
# the bytes are bad (as they arrived, or went bad at rest): never the model's fault
CORRUPT = (ErrorKind.CHECKSUM_MISMATCH, ErrorKind.BLOB_CORRUPT)


@dataclass(frozen=True)
class RunSettings:
    stage_only: bool = False
    language_model: bool = True
    gates: Gates = field(default_factory=Gates)
    trial_seconds: int = 600  # the device gives the model up unless committed by then
    abort_requested: Callable[[], bool] = lambda: False
    # the golden prompt's reference output recorded when the file entered the cache
    reference: Callable[[Artifact], Reference | None] = lambda artifact: None
    # where the device gets its blob: its site's peers, or the controller (the runner plans)
    route: Callable[[DeviceJob], Route] = lambda job: Route()
    # (device, why): its agent cannot share blobs, keep it out of its site's plan
    without_peers: Callable[[str, str], None] = lambda device, why: None
    # beside the other models or instead of them, aliases, pinned (controller.services.placement)
    placement: Placement = field(default_factory=Placement)


class DeviceRun:
    """Drives one ``DeviceJob`` to a final step, or to ``pending`` when the device is away."""

    def __init__(self, rollout: str, job: DeviceJob, connect: LinkFactory,
                 record: Callable[[DeviceJob, ModelView | None], None],
                 settings: RunSettings) -> None:
        self.rollout = rollout
        self.job = job
        self._connect = connect
        self._record = record
        self.settings = settings
        self._note = ""  # how the upload went when it had to be resumed, for the outcome
        self._route: Route | None = None
        self._peers_ok = True  # false once bytes from peers arrived corrupt in this turn
        # what the agent is told of the placement (None: an agent of one model, which
        # replaces); known once its capabilities are
        self._placement: Placement | None = None
        self._replaced = ""  # an agent of one model replaced what it ran: said in the outcome

    def run(self) -> DeviceJob:
        job = self.job
        if is_final(job.step, self.settings.stage_only) or job.artifact is None:
            return job
        try:
            link = self._connect(job.device)
        except Unreachable as exc:
            return self._pending(exc)
        with contextlib.closing(link):
            try:
                step = self._reconcile(link)
                while not is_final(step, self.settings.stage_only) and step is not Step.PENDING:
                    step = self._handle(step, link)
            except Unreachable as exc:  # TransferInterrupted too: resumable from where it was
                return self._pending(exc)
            except UploadRefused as exc:  # disk full, permission: the same write fails again
                job.bytes_sent += exc.sent
                self._move(Step.FAILED, exc.detail, exc.hint)
            except FleetError as exc:
                self._move(Step.FAILED, exc.detail, exc.hint)
        return job

    # -- bookkeeping ----------------------------------------------------------------------
    def _move(self, step: Step, reason: str, hint: str = "", model_failed: bool = False,
              restored: ModelView | None = None) -> Step:
        job = self.job
        job.step, job.reason, job.hint = step, reason, hint
        job.model_failed = job.model_failed or model_failed
        self._record(job, restored)
        failpoints.hit(f"after:{step.value}")
        return step

    def _pending(self, exc: Unreachable) -> DeviceJob:
        if isinstance(exc, TransferInterrupted):
            self.job.bytes_sent += exc.sent
        if self.job.step in (Step.ON_TRIAL, Step.CHECKING):
            why = (f"the agent went away while the model was on trial ({exc.detail}); the "
                   "device gives it up by itself at its trial deadline unless `fleet rollouts "
                   "resume` checks and commits it first")
        elif self.job.step is Step.LOADING:
            why = (f"the agent went away while loading the model ({exc.detail}); a resume "
                   "or the next deploy asks the device what it runs")
        else:
            why = f"unreachable at its turn: {exc.detail}"
        self._move(Step.PENDING, why, exc.hint or "`fleet rollouts resume ID` (or deploy with "
                   "--wait) picks it up when it is back")
        return self.job

    def _handle(self, step: Step, link: DeviceLink) -> Step:
        handler = {
            Step.PLANNED: self._preflight,
            Step.UPLOADING: self._upload,
            Step.STAGED: self._load_or_stop,
            Step.LOADING: self._load,
            Step.ON_TRIAL: self._on_trial,
            Step.CHECKING: self._check,
        }[step]
        return handler(link)

    def _share_or_not(self, agent: AgentVersion) -> None:
        """Leave a device of a site whose agent cannot share blobs out of its site's plan."""
        job = self.job
        if job.site and not compat.can_share_blobs(agent):
            self.settings.without_peers(job.device, f"{agent.describe()} cannot share blobs "
                                        f"with its peers: `fleet device upgrade {job.device}` "
                                        "(and enroll it again if it has no peer certificate)")

    # -- the steps ------------------------------------------------------------------------
    def _reconcile(self, link: DeviceLink) -> Step:
        """Where the device stands, whatever the log last said."""
        job, art = self.job, self.job.artifact
        assert art is not None
        if art.base_sha256:  # a LoRA adapter on the device's base
            at = adapter_step.reconcile(link, job, self.settings.stage_only)
            if at.moved:
                return self._move(at.step, at.reason, at.hint)
            job.reason = at.reason or job.reason
            if at.step is Step.PLANNED:
                self._share_or_not(link.capabilities())
            return at.step
        whole = link.store()
        # on an agent of several models: the slot of this model's name (its own active,
        # previous, trial and revert), whatever else the device runs
        store = whole.for_model(art.model)
        resumed = job.step in (Step.LOADING, Step.ON_TRIAL, Step.CHECKING)
        asked = self.settings.placement if whole.slots else None
        # active and committed counts only when the device confirms its copy is intact (its
        # fingerprint, or a fresh hash); a corrupt one is quarantined there and sent again
        if placement.settled(whole, art.model, art.sha256, asked) and link.check_fit(
                art.sha256, art.size_bytes, job.memory_bytes).already_held:
            if resumed:
                return self._move(Step.COMMITTED, "committed (found committed on the device "
                                  f"when the rollout was picked up); {job.choice}")
            return self._move(Step.UNCHANGED, "already active")
        if store.active == art.sha256 and store.on_trial and self.settings.stage_only:
            return self._move(Step.UNCHANGED, "already active (on trial)")
        agent = link.capabilities()  # an old agent is named before anything is sent to it
        lacking = compat.missing(agent, compat.needed(self.settings.stage_only))
        if lacking:
            return self._move(Step.FAILED, *compat.upgrade_needed(job.device, agent, lacking))
        told, refused, hint = placement.for_agent(job.device, agent, self.settings.placement)
        if refused and not self.settings.stage_only:
            return self._move(Step.FAILED, refused, hint)
        self._placement = told
        if told is None and not self.settings.placement.replace and whole.active not in (
                "", art.sha256):
            # what the operator did not ask for, said in the outcome (the plan assumed beside)
            self._replaced = ("; it replaced the model the device ran: its agent holds one "
                              f"model at a time (`fleet device upgrade {job.device}` lets it "
                              "run several)")
        self._share_or_not(agent)
        if store.active == art.sha256 and store.on_trial:
            job.reason = "confirming the model an earlier deploy left on trial"
            return Step.CHECKING
        # a model given up while the rollout was away: a crash is the model's failure; the
        # deadline passing while the controller was down, or a restart, say nothing of it
        if (resumed and store.reverted == art.sha256
                and store.reverted_cause is RevertCause.CRASH):
            return self._move(Step.FAILED, "the device gave the model up while the rollout "
                              f"was away: {store.reverted_reason}", model_failed=True)
        return Step.PLANNED  # the preflight says whether the device holds it already

    def _preflight(self, link: DeviceLink) -> Step:
        art = self.job.artifact
        assert art is not None
        # memory beside what stays loaded in the model's slot (an adapter goes onto its base)
        slot = "" if art.format == "lora" else art.model
        fit = link.check_fit(art.sha256, art.size_bytes, self.job.memory_bytes, reclaim=True,
                             slot=slot, replace=self.settings.placement.replace)
        if fit.already_held:
            return self._move(Step.STAGED, "already on the device, verified")
        if not fit.fits:
            return self._move(Step.FAILED, f"preflight refused before sending anything: "
                              f"{fit.reason}", "`fleet plan` shows a variant that fits; free "
                              "disk space or pick a smaller variant with --prefer speed")
        self._route = self.settings.route(self.job)
        return self._move(Step.UPLOADING, sending(self.job, self._route))

    def _upload(self, link: DeviceLink) -> Step:
        job, art = self.job, self.job.artifact
        assert art is not None
        job.upload_attempts += 1
        # asked again: a resumed part, what the store could free since
        fit = link.check_fit(art.sha256, art.size_bytes, job.memory_bytes, reclaim=True)
        note = ""
        if not fit.already_held:
            if not fit.fits:
                return self._move(Step.FAILED, f"preflight refused: {fit.reason}",
                                  "free disk space on the device, then resume the rollout")
            route = self._route or self.settings.route(job)
            complete = False
            if route.peers and self._peers_ok:
                complete, note = fetch_from_peers(link, job, route, self.rollout)
                if not complete:  # the controller sends the rest, after the verified prefix
                    fit = link.check_fit(art.sha256, art.size_bytes, job.memory_bytes,
                                         reclaim=True)
                    if not fit.fits and not fit.already_held:
                        return self._move(Step.FAILED, f"preflight refused: {fit.reason}",
                                          "free disk space on the device, then resume the "
                                          "rollout")
            if not complete and not fit.already_held:
                uploaded = link.upload(art, fit, link.store().incoming_dir, job.memory_bytes,
                                       sequential=route.serves_peers)
                job.bytes_sent += uploaded.bytes_sent
                if uploaded.interruptions:
                    n = len(uploaded.interruptions)
                    self._note = (f"; the upload was interrupted {n} time{'s' if n > 1 else ''} "
                                  f"and resumed ({uploaded.interruptions[-1]})")
                    note += self._note
        try:
            link.stage(art.sha256)
        except AgentRefused as exc:
            if exc.kind in CORRUPT and job.upload_attempts < UPLOAD_ATTEMPTS:
                self._peers_ok = False  # once is chance: the next copy comes from us
                return self._move(Step.UPLOADING, f"arrived corrupt ({exc.detail}); sending it "
                                  "again")
            raise
        return self._move(Step.STAGED, "verified on the device" + note + (
            "; kept for a later deploy" if self.settings.stage_only else ""))

    def _load_or_stop(self, link: DeviceLink) -> Step:
        if self.settings.stage_only:
            return self._move(Step.STAGED, f"verified on the device and kept for a later "
                              f"deploy; {self.job.choice}")
        return self._move(Step.LOADING, "loading on trial")

    def _load(self, link: DeviceLink) -> Step:
        job, art = self.job, self.job.artifact
        assert art is not None
        try:
            link.load(LoadOrder(art, job.n_ctx, job.memory_bytes, trial=True,
                                trial_seconds=self.settings.trial_seconds,
                                placement=self._placement))
        except AgentRefused as exc:
            if exc.kind in MODEL_REFUSALS:
                return self._move(Step.FAILED, "could not load it, kept its current model: "
                                  + exc.detail, exc.hint, model_failed=True)
            if exc.kind in (*CORRUPT, ErrorKind.NOT_FOUND) and (
                    job.upload_attempts < UPLOAD_ATTEMPTS):
                # the bytes are corrupt or gone on the device: not the model's fault
                return self._move(Step.UPLOADING, f"the device's copy is unusable "
                                  f"({exc.detail}); sending it again")
            raise
        where = (placement.describe(self._placement) if self._placement else
                 "in place of its model (its agent holds one model at a time)")
        return self._move(Step.ON_TRIAL, f"loaded on trial {where} (given up by the device "
                          f"unless committed within {self.settings.trial_seconds} s)")

    def _on_trial(self, link: DeviceLink) -> Step:
        return self._move(Step.CHECKING, "health check")

    def _check(self, link: DeviceLink) -> Step:
        job, art = self.job, self.job.artifact
        assert art is not None
        if self.settings.abort_requested():
            return self._give_up(link, "the rollout was aborted by the operator")
        problem, measured = health_check(link, self.settings.language_model,
                                         self.settings.gates, self.settings.reference(art),
                                         # an adapter is checked through its base (its
                                         # generations run with the adapter on trial)
                                         model=art.base_model,
                                         sha256=art.base_sha256 or art.sha256)
        if problem:
            return self._give_up(link, f"health check failed: {problem}")
        confirming = job.reason.startswith("confirming")
        link.commit(art.sha256)
        return self._move(Step.COMMITTED, ("confirmed the model an earlier deploy left on "
                                           "trial; " if confirming else "") + job.choice
                          + (f"; {measured}" if measured else "") + self._note
                          + self._replaced)

    def _give_up(self, link: DeviceLink, why: str) -> Step:
        art = self.job.artifact
        assert art is not None
        try:
            restored = link.abort_trial(art.sha256, why)
            back = f"{restored.variant}" if restored else "no model"
            what = (adapter_step.serving_after_abort(link) if art.base_sha256
                    else f"the device went back to {back}")
        except AgentRefused as exc:
            if exc.kind is not ErrorKind.NOT_ON_TRIAL:
                raise
            # it had given the model up by itself already
            store = link.store().for_model(art.model)
            restored = None
            what = ("the device had already given it up (its trial deadline or a restart)"
                    if art.base_sha256 else
                    f"the device had already given it up ({store.reverted_reason})")
        return self._move(Step.ROLLED_BACK, f"{why}; {what}", restored=restored)
