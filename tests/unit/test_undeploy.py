"""`fleet undeploy`'s decision per device (controller.core.undeploy), every branch."""

from __future__ import annotations

import pytest

from controller.core.device_models import DeviceModel, taken_off
from controller.core.undeploy import Held, decide

LLM = Held("tiny-llama", "a" * 64, ("assistant",))
MLP = Held("tiny-mlp", "b" * 64)


def test_one_of_several_is_taken_off_and_the_others_named() -> None:
    step = decide([LLM, MLP], "tiny-mlp", allow_empty=False)
    assert (step.status, step.sha256) == ("remove", MLP.sha256)
    assert step.reason == "tiny-mlp taken off; still serving tiny-llama"


@pytest.mark.parametrize(("allow", "status"), [(False, "refused"), (True, "remove")])
def test_the_last_model_goes_only_when_asked(allow: bool, status: str) -> None:
    step = decide([LLM], "tiny-llama", allow_empty=allow)
    assert step.status == status
    if allow:
        assert step.sha256 == LLM.sha256 and "serves no model now" in step.reason
    else:
        assert not step.sha256 and "--allow-empty" in step.hint


def test_an_alias_names_its_model_instead() -> None:
    step = decide([LLM, MLP], "assistant", allow_empty=True)
    assert step.status == "refused" and not step.sha256
    assert step.reason == "'assistant' is an alias of tiny-llama, not a model"
    assert step.hint.startswith("fleet undeploy tiny-llama")


def test_a_model_on_trial_is_left_to_its_rollout() -> None:
    step = decide([LLM, Held("tiny-mlp", "b" * 64, on_trial=True)], "tiny-mlp", True)
    assert step.status == "refused" and "rollouts abort" in step.hint


@pytest.mark.parametrize("active", [[], [LLM]])
def test_a_model_not_there_is_nothing_to_do(active: list[Held]) -> None:
    step = decide(active, "tiny-mlp", allow_empty=False)
    assert (step.status, step.sha256) == ("absent", "")


def test_the_fleets_record_loses_only_that_model() -> None:
    models = [DeviceModel("tiny-llama", "q4_k_m"), DeviceModel("tiny-mlp", "fp32")]
    assert taken_off(models, "tiny-mlp") == [DeviceModel("tiny-llama", "q4_k_m")]
    assert taken_off(models, "other") == models
