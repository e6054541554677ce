"""Whether a GGUF LoRA adapter fits a base model, from the two files' headers (pure).

llama.cpp (``src/llama-adapter.cpp``) loads an adapter only when its ``general.type`` is
``adapter``, ``adapter.type`` is ``lora``, its ``general.architecture`` is the base's, and
for each adapted weight ``W`` (ggml order ``[n_in, n_out]``) the pair ``W.lora_a``
``[n_in, rank]`` and ``W.lora_b`` ``[rank, n_out]`` exists; anything else fails on the
device after the bytes were shipped. Checked here, before they are.
"""

from __future__ import annotations

from dataclasses import dataclass

from controller.errors import ArtifactError

Shape = tuple[int, ...]
CONVERT_HINT = "convert a PEFT adapter with llama.cpp's convert_lora_to_gguf.py --base <the base>"


@dataclass(frozen=True)
class GgufHeader:
    """What the check needs of one file: its metadata strings/numbers and tensor shapes."""

    meta: dict[str, str | float]
    shapes: dict[str, Shape]


@dataclass(frozen=True)
class LoraFacts:
    architecture: str
    alpha: float
    rank: int
    targets: tuple[str, ...]  # the adapted kinds of weight, e.g. attn_q, ffn_up
    tensors: int  # adapted weights (pairs)


def _kind(weight: str) -> str:
    """``blk.3.attn_q.weight`` -> ``attn_q``."""
    parts = weight.split(".")
    return parts[2] if len(parts) >= 4 and parts[0] == "blk" else parts[0]


def check_lora(adapter: GgufHeader, base: GgufHeader, label: str = "the adapter") -> LoraFacts:
    """The adapter's facts, or ArtifactError naming the first thing that does not fit."""
    kind, lora = adapter.meta.get("general.type"), adapter.meta.get("adapter.type")
    if kind != "adapter" or lora != "lora":
        raise ArtifactError(f"{label} is not a LoRA adapter (general.type={kind or 'model'}, "
                            f"adapter.type={lora or '-'})", hint=CONVERT_HINT)
    arch, base_arch = adapter.meta.get("general.architecture"), base.meta.get(
        "general.architecture")
    if arch != base_arch:
        raise ArtifactError(f"{label} is for a {arch or 'unknown'} base; the base model is "
                            f"{base_arch}", hint="pick the base it was trained on (--base)")
    pairs: dict[str, dict[str, Shape]] = {}
    for name, shape in adapter.shapes.items():
        weight, dot, part = name.rpartition(".")
        if dot and part in ("lora_a", "lora_b"):
            pairs.setdefault(weight, {})[part] = shape
    if not pairs:
        raise ArtifactError(f"{label} holds no lora_a/lora_b tensors", hint=CONVERT_HINT)
    ranks = set()
    for weight, ab in sorted(pairs.items()):
        a, b = ab.get("lora_a"), ab.get("lora_b")
        if a is None or b is None:
            raise ArtifactError(f"{label}: {weight} has only one of lora_a/lora_b",
                                hint=CONVERT_HINT)
        target = base.shapes.get(weight)
        if target is None:
            raise ArtifactError(f"{label} adapts {weight}, which the base model does not have",
                                hint="is it for another model of the same architecture?")
        if len(a) != 2 or len(b) != 2 or len(target) != 2 or a[1] != b[0] \
                or (a[0], b[1]) != target:
            raise ArtifactError(
                f"{label}: {weight} is {list(target)} in the base but the adapter's "
                f"lora_a {list(a)} x lora_b {list(b)} do not make that shape",
                hint="is it for another size of this architecture?")
        ranks.add(a[1])
    alpha = adapter.meta.get("adapter.lora.alpha", 0.0)
    return LoraFacts(architecture=str(arch), alpha=float(alpha), rank=max(ranks),
                     targets=tuple(sorted({_kind(w) for w in pairs})), tensors=len(pairs))
