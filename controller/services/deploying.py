"""`fleet deploy`: plan, record the rollout, take its devices, run it wave by wave.

The rollout is persisted before any device is touched (controller.adapters.rollout_repo):
its plan, policy and each device's step, as each step happens, and a lease on every device
it will contact, so a second deploy to the same devices waits or is refused with this one's
id and a rollout whose controller dies can be resumed (controller.services.rollouts).
What happens per device is the step machine of controller.services.device_run; the order
(waves, canaries, failure budget) is controller.services.rollout_runner's.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

from controller.adapters.rollout_repo import SqlRolloutLog
from controller.adapters.tables import Device
from controller.core import waves as wave_plan
from controller.core.gates import Gates, WaveGates
from controller.core.models import ModelSpec
from controller.core.rollout import failure_budget
from controller.core.select import Request
from controller.core.steps import OK, Step
from controller.errors import DeviceError, DevicesHeld, UsageError
from controller.liveness import controller_id
from controller.services import predictions, wave_gate
from controller.services.context import Fleet
from controller.services.health_gate import reference_for
from controller.services.links import UploadOptions, link_factory
from controller.services.peer_sites import assign_sites, check_peer_options, site_routes
from controller.services.placement import check_aliases
from controller.services.planning import DevicePlan, plan
from controller.services.ports import Artifact, DeviceJob, DevicesBusy, Rollout
from controller.services.rollout_runner import Policy, Runner


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
    waves: str = ""  # e.g. "1,10%,50%,100%"; empty: one wave
    wave_pause_s: float = 0.0  # between waves
    wait_approval: bool = False  # stop before each later wave until `rollouts continue`
    wait_s: float = 0.0  # wait this long for busy devices and retry unreachable ones
    trial_seconds: int = 600  # a device gives the model up unless committed by then
    wave_max_p95_ttft_ms: float = 0.0  # judged on what a wave served before the next starts
    wave_max_error_rate: float = 0.0  # 0..1
    wave_min_requests: int = 1
    progress: Callable[[str, int, int], None] = lambda device, done, total: None
    # devices of a site seed each other (docs/delivery.md#sites-and-peers)
    peers: bool = True  # --no-peers: the controller sends to every device
    site_label: str = "site"  # devices sharing this label's value form a site
    site_subnets: tuple[str, ...] = ()  # devices without it: one site per declared subnet
    peer_degree: int = 1  # devices reading from one device (1: a pipelined chain)
    # (device, peer, verified bytes, total) of a fetch from peers
    peer_progress: Callable[[str, str, int, int], None] = (
        lambda device, source, done, total: None)
    # several models per device (controller.services.placement)
    aliases: tuple[str, ...] = ()  # names the model also answers to (moved from others)
    replace: bool = False  # instead of every other model, not beside them
    pinned: bool = False  # never unloaded to make room for another model


@dataclass(frozen=True)
class Outcome:
    device: str
    status: str  # a controller.core.steps.Step value
    variant: str
    reason: str
    hint: str = ""
    bytes_sent: int = 0
    seconds: float = 0.0
    model_failed: bool = False  # the model was tried here and could not load or run
    site: str = ""
    bytes_from_peers: int = 0  # bytes_sent: from the controller
    peer_bytes: dict[str, int] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return Step(self.status) in OK

    @classmethod
    def of(cls, job: DeviceJob, seconds: float = 0.0) -> Outcome:
        return cls(job.device, job.step.value, job.artifact.variant if job.artifact else "",
                   job.reason, job.hint, job.bytes_sent, seconds, job.model_failed, job.site,
                   job.bytes_from_peers, dict(job.peer_bytes))


@dataclass(frozen=True)
class DeployReport:
    rollout: str
    model: str
    plans: list[DevicePlan]
    outcomes: list[Outcome]
    status: str = "completed"  # the rollout's (controller.services.rollout_runner)
    reason: str = ""

    @property
    def failed(self) -> list[Outcome]:
        return [o for o in self.outcomes if not o.ok]


def check_options(options: DeployOptions) -> None:
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
    if not 10 <= options.trial_seconds <= 86_400:
        raise UsageError("--trial-timeout must be 10 s .. 24 h",
                         hint="the device gives the model up unless committed by then; "
                         "e.g. --trial-timeout 10m")
    try:
        failure_budget(options.max_failures, 0)
    except ValueError:
        raise UsageError(f"--max-failures {options.max_failures!r} is neither a count nor a "
                         "percentage", hint="e.g. --max-failures 1, --max-failures 10%, or 0 "
                         "to never stop") from None
    try:
        wave_plan.parse(options.waves or "100%")
    except ValueError as exc:
        raise UsageError(f"--waves entry {exc} is neither a count nor a percentage (1-100 %)",
                         hint="e.g. --waves 1,10%,50%,100%") from None
    check_peer_options(options)
    if options.stage_only and (options.aliases or options.replace or options.pinned):
        raise UsageError("--stage-only activates nothing: --alias, --replace and --pin apply "
                         "when the model is loaded", hint="give them to the deploy that "
                         "activates it")
    if options.wave_pause_s < 0 or options.wait_s < 0:
        raise UsageError("--wave-pause and --wait must be 0 or more", hint="e.g. --wait 30m")
    if (options.wave_max_p95_ttft_ms < 0 or not 0 <= options.wave_max_error_rate <= 1
            or options.wave_min_requests < 1):
        raise UsageError("--wave-max-p95-ttft must be >= 0, --wave-max-error-rate 0..100 %, "
                         "--wave-min-requests >= 1", hint="e.g. --wave-max-error-rate 2%")
    wave_gated = options.wave_max_p95_ttft_ms or options.wave_max_error_rate
    if wave_gated and not (options.wave_pause_s or options.wait_approval):
        raise UsageError("wave gates judge what a wave served during the pause before the "
                         "next: give --wave-pause or --wait-approval",
                         hint="e.g. --waves 1,50%,100% --wave-pause 15m "
                         "--wave-max-p95-ttft 800")


def policy_of(model: ModelSpec, request: Request, options: DeployOptions) -> Policy:
    # the measured prompt stays well inside the context whatever --prompt-tokens says
    gates = Gates(request.min_tokens_per_s, request.max_ttft_ms, options.max_joules_per_token,
                  max(1, min(request.prompt_tokens, request.ctx // 2)))
    return Policy(canary=options.canary, max_failures=options.max_failures,
                  stage_only=options.stage_only, trial_seconds=options.trial_seconds,
                  waves=options.waves, wave_pause_s=options.wave_pause_s,
                  wait_approval=options.wait_approval, wait_s=options.wait_s,
                  concurrency=options.concurrency,
                  language_model=model.arch.is_language_model, gates=gates,
                  wave_gates=WaveGates(options.wave_max_p95_ttft_ms,
                                       options.wave_max_error_rate, options.wave_min_requests),
                  upload={"retries": options.retries, "backoff_s": options.backoff_s,
                          "limit_bytes_per_s": options.limit_bytes_per_s,
                          "streams": options.streams},
                  peers={"enabled": options.peers, "degree": options.peer_degree,
                         "label": options.site_label, "subnets": list(options.site_subnets)},
                  aliases=check_aliases(model.name, options.aliases), replace=options.replace,
                  pinned=options.pinned)


def upload_options(policy: Policy, progress: Callable[[str, int, int], None],
                   peer_progress: Callable[[str, str, int, int], None] = (
                       lambda device, source, done, total: None)) -> UploadOptions:
    u = policy.upload
    return UploadOptions(int(u.get("retries", 3)), float(u.get("backoff_s", 1.0)),
                         float(u.get("limit_bytes_per_s", 0.0)), int(u.get("streams", 4)),
                         progress, peer_progress)


def deploy(fleet: Fleet, model: ModelSpec, devices: list[Device], request: Request,
           options: DeployOptions | None = None,
           on_job: Callable[[DeviceJob], None] = lambda job: None) -> DeployReport:
    options = options or DeployOptions()
    check_options(options)
    check_aliases(model.name, options.aliases)
    plans = plan(fleet, model, devices, request, replace=options.replace)
    needed = {p.choice.chosen.variant.name for p in plans if p.choice and p.choice.chosen}
    spec_by_name = {v.name: v for v in model.variants}
    # Hash every file to be sent before any device is touched: a corrupt source stops here.
    local = {name: fleet.artifacts.verify(model, spec_by_name[name]) for name in needed}
    artifacts = {name: Artifact(model.name, name, spec_by_name[name].format, a.sha256,
                                a.size_bytes, str(a.path)) for name, a in local.items()}
    jobs = _jobs(plans, artifacts)
    policy = policy_of(model, request, options)
    rollout, log = record(fleet, model.name, jobs, devices, policy, options)
    # what the selector predicted, for prediction-vs-measurement (fleet telemetry, dashboard)
    predictions.record_plan(fleet, rollout.id, model.name, plans, request.prompt_tokens)

    def remember_probe(job: DeviceJob) -> None:
        """The probed hardware is kept once a deploy to the device succeeded."""
        probed = plans[job.position].probed_json
        if job.step is Step.COMMITTED and probed:
            fleet.inventory.update_device(job.device, probed_json=probed)
        on_job(job)

    return run(fleet, log, rollout, jobs, policy, options.progress, remember_probe, plans,
               options.peer_progress)


def run(fleet: Fleet, log: SqlRolloutLog, rollout: Rollout, jobs: list[DeviceJob],
        policy: Policy, progress: Callable[[str, int, int], None],
        on_job: Callable[[DeviceJob], None], plans: list[DevicePlan] | None = None,
        peer_progress: Callable[[str, str, int, int], None] = (
            lambda device, source, done, total: None)) -> DeployReport:
    """Run (or resume) ``rollout``."""
    started: dict[str, float] = {}
    seconds: dict[str, float] = {}

    def timed(job: DeviceJob) -> None:
        started.setdefault(job.device, time.monotonic())
        seconds[job.device] = time.monotonic() - started[job.device]
        on_job(job)

    last: dict[str, float] = {}

    def shown(device: str, done: int, total: int) -> None:
        """Upload progress to the terminal and, at most once a second, to the rollout log."""
        progress(device, done, total)
        now = time.monotonic()
        if done >= total or now - last.get(device, 0.0) >= 1.0:
            last[device] = now
            log.progress(rollout.id, device, done)

    def shown_peers(device: str, source: str, done: int, total: int) -> None:
        peer_progress(device, source, done, total)
        now = time.monotonic()
        if done >= total or now - last.get(device, 0.0) >= 1.0:
            last[device] = now
            log.progress(rollout.id, device, done)

    connect = link_factory(fleet, upload_options(policy, shown, shown_peers), rollout.id)
    runner = Runner(log, connect, rollout, jobs, policy, on_job=timed,
                    judge_wave=lambda devices: wave_gate.judge(fleet, log, rollout.id, devices,
                                                               policy.wave_gates),
                    reference=lambda art: reference_for(Path(art.path), art.sha256),
                    routes=site_routes(fleet, jobs, policy.peers))
    ended = runner.run()
    outcomes = [Outcome.of(j, seconds.get(j.device, 0.0)) for j in runner.jobs]
    return DeployReport(ended.id, ended.model, plans or [], outcomes, ended.status,
                        ended.reason)


def _jobs(plans: list[DevicePlan], artifacts: dict[str, Artifact]) -> list[DeviceJob]:
    jobs = []
    for position, p in enumerate(plans):
        chosen = p.choice.chosen if p.choice else None
        job = DeviceJob(device=p.device.name, position=position, wave=0, step=Step.PLANNED,
                        artifact=None)
        if chosen is None:
            error: DeviceError | None = p.error if p.choice is None else None
            job.step = Step.FAILED if error else Step.SKIPPED
            job.reason = error.message if error else (p.choice.reason if p.choice
                                                      else "no profile")
            job.hint = error.hint if error else ""
        else:
            assert p.choice is not None
            job.artifact = artifacts[chosen.variant.name]
            job.held = job.artifact.sha256 in p.held
            job.n_ctx, job.memory_bytes = p.choice.ctx, chosen.memory.total
            job.choice = p.choice.reason
            job.reason = "waiting for its turn"
            job.predicted = {"tokens_per_s": round(chosen.tokens_per_s, 3),
                             "ttft_ms": round(chosen.ttft_ms, 3)}
        jobs.append(job)
    return jobs


def record(fleet: Fleet, label: str, jobs: list[DeviceJob], devices: list[Device],
           policy: Policy, options: DeployOptions) -> tuple[Rollout, SqlRolloutLog]:
    """Give the planned jobs their sites and waves, record the rollout (``label``: what it
    rolls out) and take its devices."""
    assign_sites(jobs, devices, options)
    contacted = [j.position for j in jobs if j.artifact is not None]
    for wave, positions in enumerate(wave_plan.assign(contacted, options.waves)):
        for position in positions:
            jobs[position].wave = wave
    rollout = Rollout(id=uuid.uuid4().hex[:12], model=label, status="running",
                      policy=policy.to_dict(),
                      waves=wave_plan.sizes(options.waves, len(contacted)) or [0],
                      controller=controller_id())
    log = SqlRolloutLog(fleet.inventory)
    _create(log, rollout, jobs, options.wait_s)
    return rollout, log


def _create(log: SqlRolloutLog, rollout: Rollout, jobs: list[DeviceJob], wait_s: float
            ) -> None:
    """Record the rollout and take its devices; with ``wait_s``, wait for devices another
    rollout holds."""
    deadline = time.monotonic() + wait_s
    while True:
        try:
            log.create(replace(rollout), jobs)
            return
        except DevicesBusy as busy:
            if time.monotonic() >= deadline:
                raise _busy_error(log, busy) from None
            time.sleep(min(2.0, max(0.1, deadline - time.monotonic())))


def _busy_error(log: SqlRolloutLog, busy: DevicesBusy) -> DeviceError:
    by_rollout: dict[str, list[str]] = {}
    for device, holder in busy.holders.items():
        by_rollout.setdefault(holder, []).append(device)
    parts = []
    for holder, names in by_rollout.items():
        status = log.load(holder)[0].status if holder else "?"
        parts.append(f"{', '.join(sorted(names))} in rollout {holder} ({status})")
    first = next(iter(by_rollout))
    return DevicesHeld(
        "devices are taken by another rollout: " + "; ".join(parts) + "; nothing was sent",
        hint=f"`fleet rollouts show {first}`; wait for it (--wait 30m), or `fleet rollouts "
        f"resume {first}` / `fleet rollouts abort {first}` if it was interrupted")

