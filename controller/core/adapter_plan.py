"""Which devices get a LoRA adapter, on which base, and why the others do not (pure).

An adapter goes only where its base model is active: on any GGUF variant of it, because
every quantization of one base shares its tensor names and shapes (the adapter was checked
against the base's header by `fleet adapter add`), and llama.cpp applies a LoRA on a
quantized base. The base is never sent. Memory: llama.cpp's runtime adapter API
(``llama_adapter_lora_init``) reads the adapter's tensors into their own buffers while the
base stays mmapped as it was, so the device needs the adapter's tensors plus a small
overhead beside the base and the adapters it already holds (``adapter_memory_bytes``; the
agent counts the same, agent.adapters).
"""

from __future__ import annotations

from dataclasses import dataclass

MIB = 1 << 20
# Beyond its file: ggml context and buffer bookkeeping, and the larger compute graph (two
# extra matmuls per adapted weight). The agent's agent.adapters.ADAPTER_OVERHEAD_BYTES; a
# unit test keeps them equal.
ADAPTER_OVERHEAD_BYTES = 8 * MIB


def adapter_memory_bytes(size_bytes: int) -> int:
    return size_bytes + ADAPTER_OVERHEAD_BYTES


@dataclass(frozen=True)
class AdapterFile:
    name: str
    base: str  # the catalog model it was trained on
    sha256: str
    size_bytes: int


@dataclass(frozen=True)
class DeviceNow:
    """What one device runs, as its agent said (or the inventory, when it was away)."""

    device: str
    model: str = ""  # "" when it runs none, or its active file is not one of the catalog's
    variant: str = ""
    sha256: str = ""
    variant_format: str = ""  # the catalog's format of that variant ("gguf", "onnx")
    base_memory_bytes: int = 0  # the selector's estimate of the base as loaded (0: unknown)
    usable_bytes: int = 0  # the device's memory budget (0: unknown)
    held_adapter_bytes: int = 0  # adapters it holds for the base besides this one
    has_adapter: bool = False  # it already holds this adapter (sha256) for the base
    holds_file: bool = False  # its store holds the adapter's file (registered or only staged)
    lora_capable: bool | None = None  # its agent says "lora-adapters" (None: unknown)
    error: str = ""  # why its state is unknown (unreachable)


@dataclass(frozen=True)
class AdapterTarget:
    device: str
    base_sha256: str = ""  # "" : skipped
    base_variant: str = ""
    memory_bytes: int = 0  # what the adapter adds on the device
    reason: str = ""
    hint: str = ""

    @property
    def skipped(self) -> bool:
        return not self.base_sha256


def _mib(n: int) -> str:
    return f"{n / MIB:.0f} MiB"


def plan_adapter(adapter: AdapterFile, devices: list[DeviceNow]) -> list[AdapterTarget]:
    """One target per device, in order: the base it applies on, or why it is skipped."""
    return [_one(adapter, d) for d in devices]


def _one(adapter: AdapterFile, d: DeviceNow) -> AdapterTarget:
    base = adapter.base
    first = f"deploy {base} first: `fleet deploy {base} --device {d.device}`"
    if d.error:
        return AdapterTarget(d.device, reason=f"its active model is unknown: {d.error}",
                             hint="deploy the adapter again when it is reachable")
    if d.lora_capable is False:
        return AdapterTarget(d.device, reason="its agent cannot load LoRA adapters (it lacks "
                             "lora-adapters); nothing was sent",
                             hint=f"upgrade its agent in place: fleet device upgrade {d.device}")
    if not d.sha256:
        return AdapterTarget(d.device, reason=f"it runs no model; the adapter applies on {base}",
                             hint=first)
    if d.model != base:
        return AdapterTarget(d.device, reason=f"it runs {d.model or 'a model not in the catalog'}"
                             f", not {base}; the adapter applies on {base} only", hint=first)
    if d.variant_format != "gguf":
        return AdapterTarget(d.device, reason=f"it runs {base} {d.variant} "
                             f"({d.variant_format or 'unknown format'}); LoRA adapters apply on "
                             "GGUF variants only",
                             hint=f"deploy a GGUF variant of {base} first: `fleet plan {base}`")
    need = adapter_memory_bytes(adapter.size_bytes)
    total = d.base_memory_bytes + d.held_adapter_bytes + need
    if d.usable_bytes and d.base_memory_bytes and total > d.usable_bytes and not d.has_adapter:
        return AdapterTarget(
            d.device, reason=f"no memory for it: {base} {d.variant} needs ~"
            f"{_mib(d.base_memory_bytes)}"
            + (f", its other adapters {_mib(d.held_adapter_bytes)}" if d.held_adapter_bytes
               else "") + f", the adapter {_mib(need)}; the budget is {_mib(d.usable_bytes)}",
            hint=f"a smaller variant of {base} leaves room: `fleet plan {base} --prefer speed`")
    room = (f"; {_mib(total)} of {_mib(d.usable_bytes)} with the base" if d.usable_bytes
            and d.base_memory_bytes else "")
    return AdapterTarget(d.device, d.sha256, d.variant, need,
                         f"applies on its active {base} {d.variant} ({d.sha256[:12]}), which "
                         f"stays as it is; the adapter adds ~{_mib(need)}{room}")
