"""The steps a device goes through in a rollout, and what each outcome says about the model.

One enum for every state a device's part of a rollout can be in, persisted as it moves (the
``rollout_device`` table) and shown as is by `fleet rollouts show` and the dashboard::

    planned ─▶ uploading ─▶ staged ─▶ loading ─▶ on-trial ─▶ checking ─▶ committed
       │           │          │          │                      │
       │           │          │          └▶ failed              └▶ rolled-back
       ├▶ unchanged│          └▶ (stage-only: staged is the end)
       ├▶ pending ◀┘ (unreachable at its turn: resume or --wait picks it up)
       ├▶ skipped (nothing fits)     └▶ halted (not started: the rollout stopped)

A device that is ``pending`` or in any step short of the end when its controller died is
picked up again by `fleet rollouts resume`, which first asks the device where it stands.
"""

from __future__ import annotations

from enum import Enum

from controller.core.rollout import Evidence


class Step(str, Enum):
    PLANNED = "planned"
    PENDING = "pending"  # unreachable at its turn; resumable
    UPLOADING = "uploading"
    STAGED = "staged"  # verified on the device and pinned; the end of a --stage-only rollout
    LOADING = "loading"
    ON_TRIAL = "on-trial"  # loaded and active, given up by the device unless committed
    CHECKING = "checking"  # the health gate runs on the model on trial
    COMMITTED = "committed"
    UNCHANGED = "unchanged"  # already active and committed: nothing to do
    ROLLED_BACK = "rolled-back"  # the device went back to its previous model
    FAILED = "failed"  # could not be done; the device keeps what it ran
    HALTED = "halted"  # not started: the rollout stopped (failures, Ctrl-C, abort)
    SKIPPED = "skipped"  # no variant fits the device

    def __str__(self) -> str:
        return self.value


FINAL = frozenset({Step.COMMITTED, Step.UNCHANGED, Step.ROLLED_BACK, Step.FAILED, Step.HALTED,
                   Step.SKIPPED})
# in flight: the device may be half-way (an upload, a model on trial) when the controller dies
IN_FLIGHT = frozenset({Step.UPLOADING, Step.STAGED, Step.LOADING, Step.ON_TRIAL,
                       Step.CHECKING})
OK = frozenset({Step.COMMITTED, Step.UNCHANGED, Step.STAGED, Step.SKIPPED})


def is_final(step: Step, stage_only: bool) -> bool:
    return step in FINAL or (stage_only and step is Step.STAGED)


def evidence(step: Step, model_failed: bool) -> Evidence:
    """What an outcome says about the model, for the canary gate and failure budget."""
    if step in (Step.COMMITTED, Step.UNCHANGED):
        return Evidence.HEALTHY
    if step is Step.ROLLED_BACK or model_failed:
        return Evidence.MODEL_FAILED
    return Evidence.NONE
