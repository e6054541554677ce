"""Which devices get a LoRA adapter and why the others do not (controller.core.adapter_plan,
pure): only where its base is active, on any GGUF variant of it, with room for the adapter
beside the base and the adapters the device holds, and an agent that can load one."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent.adapters import ADAPTER_OVERHEAD_BYTES as AGENT_OVERHEAD
from agent.adapters import adapter_memory_bytes as agent_memory
from controller.core.adapter_plan import (
    ADAPTER_OVERHEAD_BYTES,
    MIB,
    AdapterFile,
    DeviceNow,
    adapter_memory_bytes,
    plan_adapter,
)

KIOSK = AdapterFile("kiosk", "tiny-llama", "a" * 64, 2 * MIB)
BASE = "b" * 64


def _dev(**kw: object) -> DeviceNow:
    fields: dict[str, object] = {
        "device": "d1", "model": "tiny-llama", "variant": "q4_k_m", "sha256": BASE,
        "variant_format": "gguf", "base_memory_bytes": 80 * MIB, "usable_bytes": 128 * MIB,
        "lora_capable": True}
    fields.update(kw)
    return DeviceNow(**fields)  # type: ignore[arg-type]


def test_the_controller_counts_adapter_memory_as_the_agent_does() -> None:
    assert ADAPTER_OVERHEAD_BYTES == AGENT_OVERHEAD
    assert adapter_memory_bytes(3 * MIB) == agent_memory(3 * MIB) == 11 * MIB


@pytest.mark.parametrize("variant", ["q2_k", "q4_k_m", "q8_0", "f16"])
def test_any_gguf_variant_of_the_base_takes_it(variant: str) -> None:
    [t] = plan_adapter(KIOSK, [_dev(variant=variant)])
    assert not t.skipped
    assert (t.base_sha256, t.base_variant, t.memory_bytes) == (BASE, variant, 10 * MIB)
    assert t.reason == (f"applies on its active tiny-llama {variant} ({BASE[:12]}), which stays "
                        "as it is; the adapter adds ~10 MiB; 90 MiB of 128 MiB with the base")


@pytest.mark.parametrize(("now", "reason", "hint"), [
    (_dev(model="", variant="", sha256="", variant_format=""),
     "it runs no model; the adapter applies on tiny-llama",
     "deploy tiny-llama first: `fleet deploy tiny-llama --device d1`"),
    (_dev(model="phi3-mini"), "it runs phi3-mini, not tiny-llama; the adapter applies on "
     "tiny-llama only", "deploy tiny-llama first"),
    (_dev(model=""), "it runs a model not in the catalog, not tiny-llama", "deploy tiny-llama"),
    (_dev(variant="int8", variant_format="onnx"), "LoRA adapters apply on GGUF variants only",
     "deploy a GGUF variant of tiny-llama first"),
    (_dev(lora_capable=False), "its agent cannot load LoRA adapters (it lacks lora-adapters)",
     "fleet device upgrade d1"),
    (_dev(error="cannot connect"), "its active model is unknown: cannot connect",
     "when it is reachable"),
    (_dev(base_memory_bytes=120 * MIB), "no memory for it: tiny-llama q4_k_m needs ~120 MiB, "
     "the adapter 10 MiB; the budget is 128 MiB", "a smaller variant of tiny-llama"),
    (_dev(held_adapter_bytes=40 * MIB), "its other adapters 40 MiB, the adapter 10 MiB",
     "fleet plan tiny-llama --prefer speed"),
])
def test_skipped_with_the_reason_and_a_hint(now: DeviceNow, reason: str, hint: str) -> None:
    [t] = plan_adapter(KIOSK, [now])
    assert t.skipped and t.memory_bytes == 0
    assert reason in t.reason and hint in t.hint


def test_unknown_budget_or_held_adapter_is_not_refused_for_memory() -> None:
    """With no budget or base estimate the agent's own guard decides; an adapter the device
    already holds needs no new room."""
    assert not plan_adapter(KIOSK, [_dev(usable_bytes=0)])[0].skipped
    assert not plan_adapter(KIOSK, [_dev(base_memory_bytes=0)])[0].skipped
    assert not plan_adapter(KIOSK, [_dev(base_memory_bytes=125 * MIB, has_adapter=True)]
                            )[0].skipped


@given(base=st.integers(0, 4096), held=st.integers(0, 512), budget=st.integers(1, 4096),
       size=st.integers(0, 512))
def test_a_target_always_fits_its_budget(base: int, held: int, budget: int, size: int) -> None:
    adapter = AdapterFile("x", "tiny-llama", "a" * 64, size * MIB)
    [t] = plan_adapter(adapter, [_dev(base_memory_bytes=base * MIB, held_adapter_bytes=held * MIB,
                                      usable_bytes=budget * MIB)])
    fits = base == 0 or (base + held) * MIB + adapter_memory_bytes(size * MIB) <= budget * MIB
    assert t.skipped != fits
    if not t.skipped:
        assert t.memory_bytes == adapter_memory_bytes(size * MIB)


def test_one_target_per_device_in_order() -> None:
    devices = [_dev(device=f"d{i}", model="tiny-llama" if i % 2 else "") for i in range(5)]
    targets = plan_adapter(KIOSK, devices)
    assert [t.device for t in targets] == [f"d{i}" for i in range(5)]
    assert [t.skipped for t in targets] == [True, False, True, False, True]
