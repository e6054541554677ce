"""Every branch of a device's step machine: each agent error at each step -> the outcome and
what the device runs afterwards (in-memory ports: tests/unit/fakes.py)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from agent.contract import AGENT_CAPABILITIES, Capability, ErrorKind, RevertCause
from controller.core.compat import AgentVersion
from controller.core.gates import Gates
from controller.core.steps import Step
from controller.errors import TransferInterrupted, Unreachable
from controller.services.device_run import DeviceRun, RunSettings
from controller.services.ports import Artifact, DeviceJob, ModelView, Placement
from tests.unit.fakes import FakeDevice, FakeFleet, MemoryRolloutLog, refused

NEW = Artifact("m", "q4", "gguf", "a" * 64, 1000, "/models/m-q4.gguf")
OLD = ModelView("m", "q8", "b" * 64)


def _job(step: Step = Step.PLANNED) -> DeviceJob:
    return DeviceJob(device="d1", position=0, wave=0, step=step, artifact=NEW, n_ctx=512,
                     memory_bytes=10, choice="fits best")


def _run(device: FakeDevice, job: DeviceJob | None = None, **settings: object
         ) -> tuple[DeviceJob, MemoryRolloutLog]:
    log = MemoryRolloutLog()
    fleet = FakeFleet([device])
    job = job or _job()

    def record(j: DeviceJob, restored: ModelView | None) -> None:
        log.history.append((j.device, j.step.value))

    done = DeviceRun("r1", job, fleet.connect, record,
                     RunSettings(**settings)).run()  # type: ignore[arg-type]
    return done, log


def _device(**kw: object) -> FakeDevice:
    kw.setdefault("blobs", {OLD.sha256})
    return FakeDevice("d1", active=OLD, **kw)  # type: ignore[arg-type]


def test_the_happy_path_goes_through_every_step_in_order() -> None:
    device = _device()
    job, log = _run(device)
    assert job.step is Step.COMMITTED and job.bytes_sent == 1000
    assert [s for _, s in log.history] == ["uploading", "staged", "loading", "on-trial",
                                           "checking", "committed"]
    assert device.active == ModelView("m", "q4", NEW.sha256) and not device.on_trial
    assert device.previous == OLD


# (method, error, expected step, model_failed, device runs afterwards)
CASES = [
    ("store", Unreachable("away"), Step.PENDING, False, OLD.sha256),
    ("check_fit", Unreachable("away"), Step.PENDING, False, OLD.sha256),
    ("upload", TransferInterrupted("cut", sent=300), Step.PENDING, False, OLD.sha256),
    ("stage", refused(ErrorKind.INSUFFICIENT_DISK, "disk full"), Step.FAILED, False,
     OLD.sha256),
    ("load", refused(ErrorKind.NOT_FOR_THIS_MACHINE, "bad tensor"), Step.FAILED, True,
     OLD.sha256),
    ("load", refused(ErrorKind.INSUFFICIENT_MEMORY, "no room"), Step.FAILED, True,
     OLD.sha256),
    ("load", refused(ErrorKind.WORKER_FAILED, "segfault"), Step.FAILED, True, OLD.sha256),
    ("load", refused(ErrorKind.MANIFEST_REJECTED, "bad signature"), Step.FAILED, False,
     OLD.sha256),
    ("load", Unreachable("away"), Step.PENDING, False, OLD.sha256),
    ("generate", refused(ErrorKind.WORKER_FAILED, "crashed"), Step.ROLLED_BACK, False,
     OLD.sha256),
    ("generate", refused(ErrorKind.GENERATION_FAILED, "nan"), Step.ROLLED_BACK, False,
     OLD.sha256),
    ("load", refused(ErrorKind.BLOB_CORRUPT, "went bad at rest"), Step.COMMITTED, False,
     NEW.sha256),  # sent once more, not the model's fault
    ("generate", Unreachable("away"), Step.PENDING, False, NEW.sha256),  # still on trial
    ("commit", Unreachable("away"), Step.PENDING, False, NEW.sha256),  # still on trial
]


@pytest.mark.parametrize(("method", "error", "step", "model_failed", "runs"), CASES,
                         ids=[f"{c[0]}-{type(c[1]).__name__}-{getattr(c[1], 'kind', '')}"
                              for c in CASES])
def test_each_error_at_each_step(method: str, error: Exception, step: Step,
                                 model_failed: bool, runs: str) -> None:
    device = _device(fail={method: [error]})
    job, _ = _run(device)
    assert job.step is step, job.reason
    assert job.model_failed is model_failed
    assert (device.active.sha256 if device.active else "") == runs
    assert job.reason  # always says why
    if isinstance(error, TransferInterrupted):
        assert job.bytes_sent == 300  # what went before the cut is counted
    if step is Step.PENDING and runs == NEW.sha256:
        assert device.on_trial and "trial deadline" in job.reason


def test_a_blob_that_arrives_corrupt_is_sent_again_once() -> None:
    device = _device(fail={"stage": [refused(ErrorKind.CHECKSUM_MISMATCH, "hash differs")]})
    job, log = _run(device)
    assert job.step is Step.COMMITTED and device.sent == 2000
    assert ("d1", "uploading") in log.history[1:]  # once more after the first upload


def test_a_blob_corrupt_twice_fails_without_blaming_the_model() -> None:
    bad = [refused(ErrorKind.CHECKSUM_MISMATCH, "hash differs") for _ in range(2)]
    device = _device(fail={"stage": bad})
    job, _ = _run(device)
    assert job.step is Step.FAILED and not job.model_failed
    assert device.active == OLD


def test_a_copy_found_corrupt_at_load_is_re_sent_not_blamed_on_the_model() -> None:
    device = _device(blobs={OLD.sha256, NEW.sha256},
                     fail={"load": [refused(ErrorKind.CHECKSUM_MISMATCH, "quarantined")]})
    job, _ = _run(device)
    assert job.step is Step.COMMITTED and not job.model_failed
    assert device.sent == 1000  # sent once, after the device's own copy was found corrupt


def test_preflight_refusal_sends_nothing() -> None:
    device = _device(fits=False)
    job, _ = _run(device)
    assert job.step is Step.FAILED and "preflight refused" in job.reason
    assert device.sent == 0 and not job.model_failed


@pytest.mark.parametrize("replace_others", [False, True])
def test_preflight_asks_about_memory_in_the_models_slot(replace_others: bool) -> None:
    """The device judges memory against what stays loaded beside the model's slot."""
    device = _device()
    _run(device, placement=Placement(replace=replace_others))
    assert device.fit_slots[0] == ("m", replace_others)


@pytest.mark.parametrize(("tokens", "serving"), [(0, True), (4, False)])
def test_an_unhealthy_model_is_given_up_by_the_device(tokens: int, serving: bool) -> None:
    device = _device(tokens=tokens, serving=serving)
    job, _ = _run(device)
    assert job.step is Step.ROLLED_BACK and "health check failed" in job.reason
    assert device.active == OLD and device.reverted_cause is RevertCause.ABORTED
    assert job.reason.endswith("the device went back to q8")


def test_a_missed_gate_rolls_back_with_measurement_and_limit() -> None:
    device = _device()
    job, _ = _run(device, gates=Gates(min_tokens_per_s=500))
    assert job.step is Step.ROLLED_BACK
    assert "measured decode 100.0 tok/s < --min-tps 500" in job.reason


def test_a_model_the_device_gave_up_by_itself_is_reported_as_such() -> None:
    device = _device(serving=False,
                     fail={"abort_trial": [refused(ErrorKind.NOT_ON_TRIAL, "not on trial")]})
    device.reverted_reason = "its runtime worker crashed while on trial"
    job, _ = _run(device)
    assert job.step is Step.ROLLED_BACK and "already given it up" in job.reason


def test_already_active_and_committed_is_unchanged() -> None:
    device = FakeDevice("d1", active=ModelView("m", "q4", NEW.sha256), blobs={NEW.sha256})
    job, _ = _run(device)
    assert job.step is Step.UNCHANGED and device.calls == ["store", "check_fit"]


def test_an_active_copy_found_corrupt_is_sent_again_not_unchanged() -> None:
    device = FakeDevice("d1", active=ModelView("m", "q4", NEW.sha256), previous=OLD,
                        blobs={OLD.sha256})  # the agent quarantined its copy: not held
    job, _ = _run(device)
    assert job.step is Step.COMMITTED and device.sent == 1000


def test_nan_output_is_rolled_back_by_the_output_check() -> None:
    device = _device(finite=False)
    job, _ = _run(device)
    assert job.step is Step.ROLLED_BACK and "not finite" in job.reason
    assert device.active == OLD


def test_an_upload_refused_for_disk_full_fails_with_what_went() -> None:
    from controller.errors import UploadRefused

    full = UploadRefused("the device's disk is full: 0.0 MiB free", cause="disk-full", sent=400)
    device = _device(fail={"upload": [full]})
    job, _ = _run(device)
    assert job.step is Step.FAILED and "disk is full" in job.reason
    assert job.bytes_sent == 400 and not job.model_failed and device.active == OLD


def test_a_model_left_on_trial_is_checked_and_confirmed() -> None:
    device = FakeDevice("d1", active=ModelView("m", "q4", NEW.sha256), previous=OLD,
                        on_trial=True, blobs={NEW.sha256, OLD.sha256})
    job, _ = _run(device)
    assert job.step is Step.COMMITTED and job.reason.startswith("confirmed the model")
    assert "upload" not in device.calls and "load" not in device.calls


def test_a_held_blob_is_not_sent_again() -> None:
    device = _device(blobs={OLD.sha256, NEW.sha256})
    job, _ = _run(device)
    assert job.step is Step.COMMITTED and device.sent == 0 and "upload" not in device.calls


def test_an_interrupted_upload_resumes_where_it_stopped() -> None:
    device = _device(partial={NEW.sha256: 600})
    job, _ = _run(device, job=_job(Step.UPLOADING))
    assert job.step is Step.COMMITTED and device.sent == 400


@pytest.mark.parametrize(("cause", "step"), [(RevertCause.CRASH, Step.FAILED),
                                             (RevertCause.DEADLINE, Step.COMMITTED),
                                             (RevertCause.RESTART, Step.COMMITTED)])
def test_resume_judges_a_model_given_up_while_the_controller_was_away(
        cause: RevertCause, step: Step) -> None:
    device = _device(blobs={OLD.sha256, NEW.sha256})
    device.reverted, device.reverted_cause, device.reverted_reason = NEW.sha256, cause, "why"
    job, _ = _run(device, job=_job(Step.CHECKING))
    assert job.step is step
    assert job.model_failed is (cause is RevertCause.CRASH)


def test_resume_finds_a_commit_that_was_never_recorded() -> None:
    device = FakeDevice("d1", active=ModelView("m", "q4", NEW.sha256), previous=OLD,
                        blobs={NEW.sha256})
    job, _ = _run(device, job=_job(Step.CHECKING))
    assert job.step is Step.COMMITTED and "found committed" in job.reason


def test_stage_only_stops_at_staged_and_activates_nothing() -> None:
    device = _device()
    job, _ = _run(device, stage_only=True)
    assert job.step is Step.STAGED and device.active == OLD and NEW.sha256 in device.blobs


def test_an_abort_during_the_check_rolls_the_device_back() -> None:
    device = _device()
    job, _ = _run(device, abort_requested=lambda: True)
    assert job.step is Step.ROLLED_BACK and "aborted by the operator" in job.reason
    assert device.active == OLD


def test_a_final_job_is_left_alone() -> None:
    device = _device()
    job, _ = _run(device, job=replace(_job(), step=Step.COMMITTED))
    assert device.calls == []
    assert job.step is Step.COMMITTED


def test_a_resumed_upload_is_said_in_the_outcome() -> None:
    from controller.services.ports import Uploaded

    device = _device()
    original = device.upload

    def interrupted(*args: object, **kwargs: object) -> Uploaded:
        sent = original(*args, **kwargs)  # type: ignore[arg-type]
        return Uploaded(sent.bytes_sent, ("no write acknowledged for 2 s",))

    device.upload = interrupted  # type: ignore[method-assign]
    job, _ = _run(device)
    assert job.step is Step.COMMITTED
    assert job.reason.endswith("the upload was interrupted 1 time and resumed (no write "
                               "acknowledged for 2 s)")


LEGACY = AgentVersion()  # an agent that answered UNIMPLEMENTED to GetVersion
WITHOUT_ABORT = AgentVersion("0.2.0", 2, frozenset(
    c.value for c in AGENT_CAPABILITIES if c is not Capability.ABORT_TRIAL))


@pytest.mark.parametrize(("agent", "stage_only", "lacking"), [
    (LEGACY, False, "abort-trial, bound-manifest, error-kinds, trial-deadline"),
    (LEGACY, True, "bound-manifest, error-kinds"),
    (WITHOUT_ABORT, False, "abort-trial"),
])
def test_an_agent_lacking_what_the_rollout_needs_is_named_before_a_byte_is_sent(
        agent: AgentVersion, stage_only: bool, lacking: str) -> None:
    device = _device(agent=agent)
    job, log = _run(device, stage_only=stage_only)
    assert job.step is Step.FAILED and not job.model_failed
    assert f"lacks {lacking}, which this rollout needs; nothing was sent" in job.reason
    assert job.hint.startswith("upgrade its agent in place") and "fleet device upgrade d1" \
        in job.hint
    assert ("0.1.0's capabilities" in job.reason) is agent.legacy
    assert device.calls == ["store", "capabilities"] and device.sent == 0
    assert device.active == OLD and [s for _, s in log.history] == ["failed"]


def test_an_agent_lacking_only_what_a_stage_only_rollout_does_not_use_takes_it() -> None:
    device = _device(agent=WITHOUT_ABORT)
    job, _ = _run(device, stage_only=True)
    assert job.step is Step.STAGED


def test_a_device_already_running_the_model_is_not_asked_to_upgrade() -> None:
    device = FakeDevice("d1", active=ModelView("m", "q4", NEW.sha256), blobs={NEW.sha256},
                        agent=LEGACY)
    job, _ = _run(device)
    assert job.step is Step.UNCHANGED
