"""Which adapter each model of a device serves by default: from the agent's ListModels (the
collector) and from a committed adapter rollout (controller.core.device_models.with_adapter)."""

from __future__ import annotations

from agent.rpc import agent_pb2 as pb
from controller.core.device_models import DeviceModel, describe, with_adapter
from controller.services.collecting import _device_models

BASE, OTHER = "b" * 64, "c" * 64


def test_a_committed_adapter_is_named_on_its_base_only() -> None:
    models = [DeviceModel("assistant", "q4_k_m", BASE, adapter="old"),
              DeviceModel("planner", "q8_0", OTHER, adapter="route")]
    after = with_adapter(models, BASE, "faq")
    assert [(m.name, m.adapter) for m in after] == [("assistant", "faq"), ("planner", "route")]
    assert with_adapter(models, "d" * 64, "faq") == models  # its base is not there: unchanged


def test_the_active_adapter_of_each_base_comes_from_list_models() -> None:
    listed = [
        pb.ModelInfo(name="assistant", sha256=BASE, format="gguf", active=True),
        pb.ModelInfo(name="planner", sha256=OTHER, format="gguf", active=True),
        pb.ModelInfo(name="classifier", sha256="e" * 64, format="onnx", active=True),
        # held, not active (another adapter of the same base), then the active one
        pb.ModelInfo(name="kiosk", sha256="1" * 64, format="lora", base_sha256=BASE),
        pb.ModelInfo(name="faq", sha256="2" * 64, format="lora", base_sha256=BASE,
                     active=True, on_trial=True),
        # an adapter of a model no longer active on the device names nothing
        pb.ModelInfo(name="stale", sha256="3" * 64, format="lora", base_sha256="f" * 64,
                     active=True),
    ]
    assert [(m.name, m.adapter) for m in _device_models(listed)] == [
        ("assistant", "faq"), ("classifier", ""), ("planner", "")]


def test_a_model_with_an_adapter_reads_as_the_name_a_request_gives() -> None:
    m = DeviceModel("assistant", "q4_k_m", BASE, aliases=("kiosk",), resident=True,
                    adapter="faq")
    assert describe(m) == "assistant+faq q4_k_m (kiosk, resident)"
    assert describe(DeviceModel("assistant", "q4_k_m")) == "assistant q4_k_m (unloaded)"
