"""Run one device's part of a rollout for a plan a test made itself (e.g. against stale
numbers the device's own preflight must catch), through the real rollout machinery."""

from __future__ import annotations

from controller.adapters.rollout_repo import SqlRolloutLog
from controller.artifacts import LocalArtifact
from controller.core.select import Choice
from controller.core.steps import Step
from controller.liveness import controller_id
from controller.services import deploying
from controller.services.context import Fleet
from controller.services.ports import Artifact, DeviceJob, Rollout
from controller.services.rollout_runner import Policy


def run_single(fleet: Fleet, device: str, choice: Choice, local: LocalArtifact,
               rollout: str = "test-rollout") -> deploying.Outcome:
    assert choice.chosen is not None
    variant = choice.chosen.variant
    art = Artifact("tiny-llama", variant.name, variant.format, local.sha256,
                   local.size_bytes, str(local.path))
    job = DeviceJob(device, 0, 0, Step.PLANNED, art, n_ctx=choice.ctx,
                    memory_bytes=choice.chosen.memory.total, choice=choice.reason)
    record = Rollout(rollout, "tiny-llama", "running", Policy().to_dict(), [1],
                     controller=controller_id())
    log = SqlRolloutLog(fleet.inventory)
    log.create(record, [job])
    report = deploying.run(fleet, log, record, [job], Policy(), lambda *a: None,
                           lambda j: None)
    return report.outcomes[0]
