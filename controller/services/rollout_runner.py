"""Drives a persisted rollout through its waves: which device moves next (the pure rollout
gate decides), each device's turn (``DeviceRun``), pauses and approvals between waves, the
heartbeat that shows the rollout is alive, and how it ends.

Talks only to ports (``RolloutLog``, ``LinkFactory``), so every branch runs in unit tests
against in-memory implementations; `fleet deploy` and `fleet rollouts resume|continue` run it
against the database and real devices.

How a rollout ends (``Rollout.status``):
    completed    every device is final
    halted       the failure budget of a wave was spent: devices not started are ``halted``
    pending      devices were unreachable at their turn (``resume`` or ``--wait`` goes on)
    paused       waiting for ``fleet rollouts continue`` before the next wave
    interrupted  Ctrl-C; devices not started stay ``planned`` (``resume`` goes on)
    aborted      ``fleet rollouts abort``: devices on trial went back, the rest ``halted``
A controller that dies leaves ``running`` with a heartbeat that goes stale: shown as
``interrupted`` and taken over by ``resume``.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timedelta, timezone
from typing import Any

from controller.core.gates import Gates, WaveGates
from controller.core.output_check import Reference
from controller.core.rollout import Evidence, RolloutGate, RolloutPolicy, failure_budget
from controller.core.steps import Step, evidence, is_final
from controller.liveness import heartbeat_s
from controller.services.device_run import DeviceRun, RunSettings
from controller.services.ports import (
    Artifact,
    DeviceJob,
    LinkFactory,
    ModelView,
    Placement,
    Rollout,
    RolloutLog,
    Route,
)
from controller.services.site_routes import SiteRoutes


def retry_pending_s() -> float:
    """``FLEET_ROLLOUT_RETRY_S``: with --wait, how often unreachable devices are retried."""
    return float(os.environ.get("FLEET_ROLLOUT_RETRY_S") or 10.0)


@dataclass(frozen=True)
class Policy:
    """How a rollout proceeds; persisted with it so a resume goes on the same way."""

    canary: int = 1
    max_failures: str = "1"
    stage_only: bool = False
    trial_seconds: int = 600
    waves: str = ""
    wave_pause_s: float = 0.0
    wait_approval: bool = False
    wait_s: float = 0.0  # keep retrying unreachable devices this long
    concurrency: int = 4
    language_model: bool = True
    gates: Gates = field(default_factory=Gates)
    wave_gates: WaveGates = field(default_factory=WaveGates)  # judged between waves
    upload: dict[str, float] = field(default_factory=dict)  # retries, backoff, bwlimit, streams
    # sites seed each other (controller.core.fanout): enabled, degree, label, subnets
    peers: dict[str, Any] = field(default_factory=dict)
    # several models per device (controller.services.placement): beside the others unless
    # ``replace``; the aliases it takes; pinned. A rollout recorded before these existed
    # reads as beside, no aliases, not pinned.
    aliases: tuple[str, ...] = ()
    replace: bool = False
    pinned: bool = False

    @property
    def placement(self) -> Placement:
        return Placement(tuple(self.aliases), self.replace, self.pinned)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Policy:
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        gates = Gates(**known.pop("gates", {}))
        wave_gates = WaveGates(**known.pop("wave_gates", {}))
        aliases = tuple(str(a) for a in known.pop("aliases", ()))
        return cls(**known, gates=gates, wave_gates=wave_gates, aliases=aliases)


class Runner:
    def __init__(self, log: RolloutLog, connect: LinkFactory, rollout: Rollout,
                 jobs: list[DeviceJob], policy: Policy,
                 on_job: Callable[[DeviceJob], None] = lambda job: None,
                 judge_wave: Callable[[list[str]], tuple[str, str]] | None = None,
                 reference: Callable[[Artifact], Reference | None] = lambda art: None,
                 sleep: Callable[[float], None] = time.sleep,
                 now: Callable[[], datetime] = lambda: datetime.now(timezone.utc),
                 routes: SiteRoutes | None = None) -> None:
        self.log = log
        self.connect = connect
        self.rollout = rollout
        self.jobs = sorted(jobs, key=lambda j: j.position)
        self.policy = policy
        self.on_job = on_job
        self.judge_wave = judge_wave  # what a finished wave's devices served: (problem, note)
        self.reference = reference  # the file's golden output recorded when it was cached
        self.sleep = sleep
        self.now = now
        self.routes = routes  # where each device gets its blob (None: from the controller)
        self.stopped = threading.Event()  # Ctrl-C: finish what runs, start nothing
        self.lost = threading.Event()  # another controller took the rollout over
        self._lock = threading.Lock()

    # -- the whole rollout ----------------------------------------------------------------
    def run(self) -> Rollout:
        deadline = time.monotonic() + self.policy.wait_s
        with self._heartbeat(), self._ctrl_c_stops():
            while True:
                status = self._pass()
                if status != "pending" or time.monotonic() >= deadline:
                    break
                self.sleep(min(retry_pending_s(), max(0.0, deadline - time.monotonic())))
                if self.stopped.is_set() or self.lost.is_set():
                    status = "interrupted"
                    break
        return self._finish(status)

    def _pass(self) -> str:
        """One pass over the waves from the first with work left; the status it ends in."""
        for wave in range(len(self.rollout.waves)):
            todo = [j for j in self.jobs if j.wave == wave and not self._final(j)]
            if not todo:
                continue
            if wave > self.rollout.wave:  # crossing into a new wave: pause or approval
                waited = self._between_waves(wave)
                if waited:
                    return waited
            status = self._run_wave(wave, todo)
            if status:
                return status
        if self._abort_requested():
            return "aborted"
        return "pending" if any(j.step is Step.PENDING for j in self.jobs) else "completed"

    def _between_waves(self, wave: int) -> str:
        if self._abort_requested():
            return "aborted"
        if self.policy.wait_approval and self.rollout.approved_wave < wave:
            self.rollout = replace(self.rollout, status="paused",
                                   reason=f"waiting for approval of wave {wave + 1}")
            self.log.update(self.rollout)
            return "paused"
        if self.policy.wave_pause_s > 0:
            until = self.rollout.next_wave_at or (
                self.now() + timedelta(seconds=self.policy.wave_pause_s))
            self.rollout = replace(self.rollout, next_wave_at=until,
                                   reason=f"pausing before wave {wave + 1} until "
                                   f"{until:%H:%M:%S} UTC")
            self.log.update(self.rollout)
            while (left := (until - self.now()).total_seconds()) > 0:
                if self.stopped.is_set() or self.lost.is_set():
                    return "interrupted"
                if self._abort_requested():
                    return "aborted"
                self.sleep(min(1.0, left))
        note = ""
        if self.judge_wave is not None and self.policy.wave_gates.any:
            served = [j.device for j in self.jobs
                      if j.wave == wave - 1 and j.step is Step.COMMITTED]
            problem, note = self.judge_wave(served)
            if problem:
                self._halt(f"not started: wave {wave}'s devices missed a wave gate: {problem}",
                           "the devices of earlier waves keep the new model; `fleet telemetry "
                           "--by device` shows what they served")
                return "halted"
        self.rollout = replace(self.rollout, wave=wave, next_wave_at=None,
                               reason=f"wave {wave} judged: {note}" if note else "")
        self.log.update(self.rollout)
        return ""

    # -- one wave -------------------------------------------------------------------------
    def _run_wave(self, wave: int, todo: list[DeviceJob]) -> str:
        earlier = [j for j in self.jobs if self._final(j) and j.wave <= wave]
        healthy: dict[str, int] = {}
        for j in earlier:
            if evidence(j.step, j.model_failed) is Evidence.HEALTHY:
                healthy[j.sha256] = healthy.get(j.sha256, 0) + 1
        prior = sum(1 for j in earlier if j.wave == wave
                    and evidence(j.step, j.model_failed) is Evidence.MODEL_FAILED)
        wave_size = sum(1 for j in self.jobs if j.wave == wave)
        budget = 0 if self.policy.stage_only else failure_budget(self.policy.max_failures,
                                                                 wave_size)
        canary = 0 if self.policy.stage_only else self.policy.canary
        gate = RolloutGate([j.sha256 for j in todo], RolloutPolicy(canary, budget), healthy,
                           prior)
        with ThreadPoolExecutor(max_workers=max(1, min(self.policy.concurrency,
                                                       len(todo)))) as pool:
            running: dict[Future[DeviceJob], int] = {}
            while True:
                if self.stopped.is_set() or self.lost.is_set() or self._abort_requested():
                    gate.stop()
                for i in gate.startable(self.policy.concurrency - len(running)):
                    gate.start(i)
                    running[pool.submit(self._turn, todo[i])] = i
                if not running:
                    break
                finished, _ = wait(running, timeout=1.0, return_when=FIRST_COMPLETED)
                for future in finished:
                    i = running.pop(future)
                    job = future.result()
                    gate.finish(i, evidence(job.step, job.model_failed))
                    if self._final(job):
                        self.log.release(self.rollout.id, [job.device])
        if gate.failed_out:
            failed = [todo[i].device for i in gate.failures] + [
                j.device for j in earlier if j.wave == wave and j.model_failed]
            self._halt(f"not started: the rollout stopped after the new model failed on "
                       f"{', '.join(failed)}",
                       "this device keeps its current model; deploy again once the failed "
                       "devices' reason is dealt with, or pass --max-failures 0 to go on "
                       "regardless")
            return "halted"
        if self._abort_requested():
            return "aborted"
        if self.stopped.is_set() or self.lost.is_set():
            return "interrupted"
        return ""

    def _turn(self, job: DeviceJob) -> DeviceJob:
        settings = RunSettings(stage_only=self.policy.stage_only,
                               language_model=self.policy.language_model,
                               gates=self.policy.gates,
                               trial_seconds=self.policy.trial_seconds,
                               abort_requested=self._abort_requested,
                               reference=self.reference,
                               route=self.routes.route if self.routes else lambda j: Route(),
                               without_peers=(self.routes.exclude if self.routes
                                              else lambda device, why: None),
                               placement=self.policy.placement)
        if self.routes is None:
            return DeviceRun(self.rollout.id, job, self.connect, self._record, settings).run()
        self.routes.started(job.device)  # its site's later devices may read from it now
        try:
            return DeviceRun(self.rollout.id, job, self.connect, self._record, settings).run()
        finally:
            self.routes.finished(job.device)

    def _record(self, job: DeviceJob, restored: ModelView | None) -> None:
        with self._lock:
            self.log.record(self.rollout.id, job, restored)
        self.on_job(job)

    # -- endings --------------------------------------------------------------------------
    def _halt(self, reason: str, hint: str) -> None:
        for job in self.jobs:
            if not self._final(job) and job.step not in (Step.ON_TRIAL, Step.CHECKING):
                job.step, job.reason, job.hint = Step.HALTED, reason, hint
                self.log.record(self.rollout.id, job)
                self.on_job(job)
        self.log.release(self.rollout.id, [j.device for j in self.jobs if self._final(j)])

    def _finish(self, status: str) -> Rollout:
        if status == "aborted":
            self._halt("not started: the rollout was aborted by the operator",
                       "this device keeps its current model")
        done = status in ("completed", "halted", "aborted")
        if done:  # nothing left to resume: every lease goes
            self.log.release(self.rollout.id, [j.device for j in self.jobs])
        if status == "interrupted":
            for job in self.jobs:
                if job.step is Step.PLANNED:
                    job.reason = ("not started: the deploy was interrupted; `fleet rollouts "
                                  f"resume {self.rollout.id}` goes on, `fleet rollouts abort "
                                  f"{self.rollout.id}` ends it")
                    self.log.record(self.rollout.id, job)
        reason = self.rollout.reason if status == "paused" else {
            "pending": f"{sum(j.step is Step.PENDING for j in self.jobs)} device(s) were "
                       "unreachable at their turn",
            "interrupted": "interrupted (Ctrl-C)" if self.stopped.is_set() else
                           "another controller took the rollout over",
        }.get(status, "")
        self.rollout = replace(self.rollout, status=status, reason=reason,
                               finished_at=self.now() if done else None)
        self.log.update(self.rollout)
        return self.rollout

    def _final(self, job: DeviceJob) -> bool:
        return is_final(job.step, self.policy.stage_only) or job.artifact is None

    def _abort_requested(self) -> bool:
        return self.rollout.abort_requested or self.log.abort_requested(self.rollout.id)

    # -- liveness and Ctrl-C --------------------------------------------------------------
    @contextlib.contextmanager
    def _heartbeat(self) -> Iterator[None]:
        done = threading.Event()

        def beat() -> None:
            while not done.wait(heartbeat_s()):
                if not self.log.heartbeat(self.rollout.id, self.rollout.controller):
                    self.lost.set()

        thread = threading.Thread(target=beat, name="rollout-heartbeat", daemon=True)
        thread.start()
        try:
            yield
        finally:
            done.set()
            thread.join()

    @contextlib.contextmanager
    def _ctrl_c_stops(self) -> Iterator[None]:
        """The first Ctrl-C stops the rollout: the devices in flight finish (a device is
        never left half-done), no other starts; the rollout stays resumable. A second one
        gives up waiting."""
        if threading.current_thread() is not threading.main_thread():
            yield
            return

        def stop(signum: int, frame: object) -> None:
            if self.stopped.is_set():
                raise KeyboardInterrupt
            self.stopped.set()

        previous = signal.signal(signal.SIGINT, stop)
        try:
            yield
        finally:
            signal.signal(signal.SIGINT, previous if previous is not None else signal.SIG_DFL)
