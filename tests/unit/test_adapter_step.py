"""Where a device stands on entry to its turn in an adapter rollout
(controller.services.adapter_step), against the in-memory device of tests/unit/fakes.py:
the base it was planned on must still be active and committed, its agent able to load
adapters; an adapter already serving is unchanged, one left on trial is confirmed."""

from __future__ import annotations

import pytest

from agent.contract import AGENT_CAPABILITIES, Capability
from controller.core.compat import AgentVersion
from controller.core.steps import Step
from controller.services.adapter_step import Standing, reconcile, serving_after_abort
from controller.services.ports import AdapterView, Artifact, DeviceJob, ModelView
from tests.unit.fakes import FakeDevice

BASE, ADAPTER, OTHER = "b" * 64, "a" * 64, "c" * 64
ART = Artifact("tiny-llama+kiosk", "q4_k_m", "lora", ADAPTER, 1 << 20, "/k.gguf", BASE)


def _device(**kw: object) -> FakeDevice:
    return FakeDevice("d1", active=ModelView("tiny-llama", "q4_k_m", BASE), **kw)  # type: ignore[arg-type]


def _at(device: FakeDevice, step: Step = Step.PLANNED, stage_only: bool = False) -> Standing:
    return reconcile(device, DeviceJob("d1", 0, 0, step, ART, choice="applies"), stage_only)


def test_a_device_with_its_base_goes_on_to_the_preflight() -> None:
    assert _at(_device()) == Standing(Step.PLANNED, moved=False)


def test_the_base_changed_since_the_plan() -> None:
    device = _device()
    device.active = ModelView("tiny-llama", "q8_0", OTHER)
    at = _at(device)
    assert at.step is Step.SKIPPED and "its active model changed since the plan" in at.reason
    assert "deploy tiny-llama first" in at.hint
    device.active = None
    assert "runs no model now" in _at(device).reason
    assert "adapters" not in device.calls  # decided before asking anything else


def test_a_base_on_trial_is_left_to_its_rollout() -> None:
    at = _at(_device(on_trial=True))
    assert at.step is Step.SKIPPED and "on trial from another rollout" in at.reason


def test_an_agent_without_lora_adapters_is_named_for_an_upgrade() -> None:
    caps = frozenset(c.value for c in AGENT_CAPABILITIES) - {Capability.LORA_ADAPTERS.value}
    at = _at(_device(agent=AgentVersion("0.2.0", 2, caps, 0.0)))
    assert at.step is Step.SKIPPED and "lacks lora-adapters" in at.reason
    assert "fleet device upgrade d1" in at.hint


@pytest.mark.parametrize(("held", "step", "stage_only", "expected"), [
    (AdapterView(default=ADAPTER, names=(("kiosk", ADAPTER),)), Step.PLANNED, False,
     Standing(Step.UNCHANGED, "already serving this adapter")),
    (AdapterView(default=ADAPTER, names=(("kiosk", ADAPTER),)), Step.ON_TRIAL, False,
     Standing(Step.COMMITTED, "committed (found serving on the device when the rollout was "
              "picked up); applies")),
    (AdapterView(trial=ADAPTER, names=(("kiosk", ADAPTER),)), Step.CHECKING, False,
     Standing(Step.CHECKING, "confirming the adapter an earlier deploy left on trial",
              moved=False)),
    (AdapterView(trial=ADAPTER), Step.PLANNED, True,
     Standing(Step.UNCHANGED, "already loaded (on trial)")),
    (AdapterView(default=OTHER, trial=OTHER), Step.PLANNED, False,
     Standing(Step.PLANNED, moved=False)),
])
def test_what_the_device_holds_decides(held: AdapterView, step: Step, stage_only: bool,
                                       expected: Standing) -> None:
    assert _at(_device(held_adapters=held), step, stage_only) == expected


def test_what_serves_after_an_abort_is_said() -> None:
    device = _device(held_adapters=AdapterView(default=OTHER, names=(("faq", OTHER),)))
    assert serving_after_abort(device) == "the device serves its previous adapter faq again"
    assert serving_after_abort(_device()) == "the device serves the base model alone again"
