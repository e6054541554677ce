"""What a LoRA adapter file is and whether it fits a base model, from the headers alone.

A GGUF LoRA adapter (llama.cpp's ``convert_lora_to_gguf.py``) says ``general.type =
adapter``, ``adapter.type = lora``, ``adapter.lora.alpha`` and the ``general.architecture``
of the base it was trained on. llama.cpp refuses an adapter of another architecture only with
a log line and a NULL; this check runs first and names both sides.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from agent.errors import AdapterMismatch
from agent.gguf_meta import read_meta

ARCH = "general.architecture"
KEYS = (ARCH, "general.type", "adapter.type", "adapter.lora.alpha")


@dataclass(frozen=True)
class AdapterHeader:
    architecture: str
    alpha: float


def read_adapter_header(path: Path) -> AdapterHeader:
    """The header of a GGUF LoRA adapter; AdapterMismatch when the file is no LoRA adapter."""
    meta = read_meta(path, KEYS)
    if meta.get("general.type") != "adapter" or meta.get("adapter.type") != "lora":
        kind = meta.get("general.type") or "model"
        raise AdapterMismatch(
            f"{path.name} is not a LoRA adapter (its header says general.type={kind}, "
            f"adapter.type={meta.get('adapter.type', '')}); convert a PEFT adapter with "
            "llama.cpp's convert_lora_to_gguf.py")
    alpha = meta.get("adapter.lora.alpha", 0.0)
    return AdapterHeader(str(meta.get(ARCH, "")), float(alpha))


def base_architecture(path: Path) -> str:
    return str(read_meta(path, (ARCH,)).get(ARCH, ""))


def check_adapter_fits(adapter: AdapterHeader, base_arch: str, base_name: str = "") -> None:
    """AdapterMismatch unless the adapter was made for the base's architecture."""
    if not adapter.architecture or adapter.architecture != base_arch:
        base = f"{base_name} ({base_arch})" if base_name else base_arch
        raise AdapterMismatch(
            f"the adapter is for a {adapter.architecture or 'unknown'} base; the model it "
            f"was to apply to is {base}")
