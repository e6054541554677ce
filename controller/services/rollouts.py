"""`fleet rollouts resume|continue|abort`: a persisted rollout taken up again.

``resume`` takes over a rollout whose controller died (its heartbeat went stale), was
interrupted (Ctrl-C), or left devices pending, and finishes it: each device is asked where it
stands first, so nothing it holds is sent again. ``continue`` approves the next wave of a
rollout paused with ``--wait-approval`` and drives it. ``abort`` ends a rollout: devices
with the new model on trial go back to their previous model (the agent's own), devices not
started are halted; a rollout driven live by another process is asked to abort and does so
itself.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path

from agent.contract import sha256_file
from controller.adapters.rollout_repo import SqlRolloutLog
from controller.core.steps import Step, is_final
from controller.errors import ArtifactError, FleetError, UsageError
from controller.liveness import controller_id, stale_after_s
from controller.services.context import Fleet
from controller.services.deploying import DeployReport, run, upload_options
from controller.services.links import link_factory
from controller.services.ports import DeviceJob, LinkFactory, Rollout, RolloutBusy
from controller.services.rollout_runner import Policy


@dataclass(frozen=True)
class AbortReport:
    rollout: str
    requested_only: bool  # driven live elsewhere: that process aborts it
    jobs: list[DeviceJob]


def _take(fleet: Fleet, prefix: str) -> tuple[SqlRolloutLog, Rollout, list[DeviceJob]]:
    log = SqlRolloutLog(fleet.inventory)
    rollout_id = log.resolve(prefix)
    try:
        log.claim(rollout_id, controller_id(), stale_after_s())
    except RolloutBusy as busy:
        raise UsageError(f"rollout {rollout_id} is being driven by {busy.rollout.controller} "
                         "right now", hint=f"`fleet rollouts show {rollout_id}` follows it; "
                         "`fleet rollouts abort` asks it to stop") from None
    rollout, jobs = log.load(rollout_id)
    return log, rollout, jobs


def _check_files(jobs: list[DeviceJob]) -> None:
    """The files still to send are the ones the rollout planned, byte for byte."""
    checked: set[str] = set()
    for job in jobs:
        art = job.artifact
        if art is None or art.sha256 in checked or job.step not in (
                Step.PLANNED, Step.PENDING, Step.UPLOADING):
            continue
        path = Path(art.path)
        if not path.is_file() or sha256_file(path) != art.sha256:
            raise ArtifactError(f"{art.model} {art.variant} at {path} is missing or changed "
                                "since the rollout started; refusing to send it",
                                hint=("abort the rollout and run `fleet deploy "
                                      f"{art.model.partition('+')[0]} --adapter {art.adapter}`"
                                      " again (`fleet adapter add --replace` keeps one file "
                                      "per name)"
                                      if art.base_sha256 else
                                      f"restore it (`fleet model build {art.model}` or "
                                      "`fleet model import`), or abort the rollout"))
        checked.add(art.sha256)


def resume(fleet: Fleet, prefix: str, progress: Callable[[str, int, int], None],
           on_job: Callable[[DeviceJob], None], approve: bool = False,
           peer_progress: Callable[[str, str, int, int], None] = (
               lambda device, source, done, total: None)) -> DeployReport:
    log, rollout, jobs = _take(fleet, prefix)
    policy = Policy.from_dict(rollout.policy)
    if rollout.status == "paused" and not approve:
        log.update(replace(rollout, controller=""))
        raise UsageError(f"rollout {rollout.id} waits for approval of wave "
                         f"{rollout.wave + 2}", hint=f"`fleet rollouts continue {rollout.id}`"
                         " approves it and goes on")
    if approve:
        rollout = replace(rollout, approved_wave=max(rollout.approved_wave, rollout.wave + 1))
    _check_files(jobs)
    rollout = replace(rollout, status="running", reason="", controller=controller_id())
    log.update(rollout)
    return run(fleet, log, rollout, jobs, policy, progress, on_job,
               peer_progress=peer_progress)


def abort(fleet: Fleet, prefix: str,
          on_job: Callable[[DeviceJob], None] = lambda job: None) -> AbortReport:
    log = SqlRolloutLog(fleet.inventory)
    rollout_id = log.resolve(prefix)
    try:
        log.claim(rollout_id, controller_id(), stale_after_s())
    except RolloutBusy:
        log.request_abort(rollout_id)
        return AbortReport(rollout_id, True, log.load(rollout_id)[1])
    rollout, jobs = log.load(rollout_id)
    policy = Policy.from_dict(rollout.policy)
    connect = link_factory(fleet, upload_options(policy, lambda *a: None), rollout_id)
    for job in jobs:
        if is_final(job.step, policy.stage_only) or job.artifact is None:
            continue
        if job.step in (Step.LOADING, Step.ON_TRIAL, Step.CHECKING):
            _give_up(connect, job)
        else:
            job.step, job.reason, job.hint = (Step.HALTED, "not started: the rollout was "
                                              "aborted by the operator",
                                              "this device keeps its current model")
        log.record(rollout_id, job)
        on_job(job)
    log.release(rollout_id, [j.device for j in jobs])
    log.update(replace(rollout, status="aborted", reason="aborted by the operator",
                       finished_at=_now()))
    return AbortReport(rollout_id, False, jobs)


def _give_up(connect: LinkFactory, job: DeviceJob) -> None:
    """A device that may run the new model on trial: have it go back by itself."""
    art = job.artifact
    assert art is not None
    try:
        link = connect(job.device)
        with contextlib.closing(link):
            store = link.store().for_model(art.model)  # its model's slot, on a device of several
            if store.active == art.sha256 and store.on_trial:
                restored = link.abort_trial(art.sha256, "the rollout was aborted by the "
                                            "operator")
                job.step = Step.ROLLED_BACK
                job.reason = ("aborted by the operator; the device went back to "
                              + (restored.variant if restored else "no model"))
            elif store.active == art.sha256:
                job.step, job.reason = Step.COMMITTED, "already committed when aborted"
            else:
                job.step, job.reason = Step.HALTED, "aborted; the new model was not active"
    except FleetError as exc:
        job.step = Step.FAILED
        job.reason = (f"aborted, but the device could not be reached ({exc.message}); it "
                      "gives the model on trial up by itself at its trial deadline")
        job.hint = "`fleet status` shows what it runs once it is back"


def _now() -> datetime:
    return datetime.now(timezone.utc)
