"""Where a device stands for an adapter rollout (``fleet deploy MODEL --adapter NAME``), asked
on entry to its turn like a model's (controller.services.device_run._reconcile).

An adapter applies on the base the device had active when the rollout was planned (the
job's ``artifact.base_sha256``); the base is never sent. The rest of the device's turn is the
model's step machine: preflight, the same verified resumable upload, a signed LoadModel
(format "lora", base_sha256) on trial with its deadline, the health gate (generation with no
adapter named runs with the one on trial: agent.adapters), commit or AbortTrial.
"""

from __future__ import annotations

from dataclasses import dataclass

from agent.contract import Capability
from controller.core import compat
from controller.core.steps import Step
from controller.services.ports import DeviceJob, DeviceLink

NEEDED: frozenset[str] = frozenset({Capability.LORA_ADAPTERS.value})


@dataclass(frozen=True)
class Standing:
    step: Step
    reason: str = ""
    hint: str = ""
    moved: bool = True  # a step to record; False: go on to ``step`` without recording it


def reconcile(link: DeviceLink, job: DeviceJob, stage_only: bool) -> Standing:
    art = job.artifact
    assert art is not None and art.base_sha256
    resumed = job.step in (Step.LOADING, Step.ON_TRIAL, Step.CHECKING)
    base = art.base_model
    store = link.store().for_model(base)  # the base's slot on a device of several models
    if store.active != art.base_sha256:
        now = f"now runs {store.active[:12]}" if store.active else "runs no model now"
        return Standing(Step.SKIPPED, f"its active model changed since the plan ({now}); the "
                        f"adapter applies on {base} {art.variant} ({art.base_sha256[:12]})",
                        f"deploy {base} first, then the adapter again")
    if store.on_trial:
        return Standing(Step.SKIPPED, f"its {base} is on trial from another rollout; an "
                        "adapter goes only on a committed base",
                        "let that rollout finish (`fleet rollouts`), then deploy the adapter")
    agent = link.capabilities()
    lacking = compat.missing(agent, compat.needed(stage_only) | NEEDED)
    if lacking:
        reason, hint = compat.upgrade_needed(job.device, agent, lacking)
        # not the adapter's failure: the device keeps serving what it serves
        return Standing(Step.SKIPPED, reason, hint)
    held = link.adapters(art.base_sha256)
    if held.trial == art.sha256:
        if stage_only:
            return Standing(Step.UNCHANGED, "already loaded (on trial)")
        return Standing(Step.CHECKING, "confirming the adapter an earlier deploy left on trial",
                        moved=False)
    if held.default == art.sha256 and not held.trial:
        if resumed:
            return Standing(Step.COMMITTED, "committed (found serving on the device when the "
                            f"rollout was picked up); {job.choice}")
        return Standing(Step.UNCHANGED, "already serving this adapter")
    return Standing(Step.PLANNED, moved=False)  # the preflight says if the device holds it


def serving_after_abort(link: DeviceLink) -> str:
    """What the device serves once the adapter on trial was given up, in words."""
    held = link.adapters()
    name = next((n for n, sha in held.names if sha == held.default), "")
    return (f"the device serves its previous adapter {name} again" if name
            else "the device serves the base model alone again")
