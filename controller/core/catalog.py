"""Parse a catalog entry (TOML read into a dict) into a ``ModelSpec``."""

from __future__ import annotations

from typing import Any

from controller.core import quality
from controller.core.models import Architecture, ModelSpec, Variant
from controller.core.validation import Fields
from controller.errors import InvalidData

FORMATS = ("gguf", "onnx")


def _layers(a: Fields) -> tuple[int, ...]:
    value = a.data.get("n_head_kv_layers", [])
    n_layer = a.data.get("n_layer")
    if not isinstance(value, list) or not all(
            isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in value):
        raise InvalidData(f"{a.origin}: field 'arch.n_head_kv_layers' must be a list of "
                          "positive whole numbers")
    if value and len(value) != n_layer:
        raise InvalidData(f"{a.origin}: field 'arch.n_head_kv_layers' has {len(value)} entries, "
                          f"expected n_layer = {n_layer}")
    return tuple(value)


def parse_model(data: dict[str, Any], origin: str) -> ModelSpec:
    f = Fields(data, origin)
    a = f.section("arch")
    arch = Architecture(
        n_layer=a.whole("n_layer", minimum=0),
        n_embd=a.whole("n_embd", minimum=0),
        n_head=a.whole("n_head", minimum=0),
        n_head_kv=a.whole("n_head_kv", minimum=0),
        n_ctx_train=a.whole("n_ctx_train", minimum=1),
        n_vocab=a.whole("n_vocab", minimum=0),
        params=a.whole("params", minimum=1),
        active_params=a.whole("active_params", 0),
        head_dim_override=a.whole("head_dim", 0),
        n_head_kv_layers=_layers(a),
        n_ff=a.whole("n_ff", 0),
        n_expert=a.whole("n_expert", 0),
        n_expert_used=a.whole("n_expert_used", 0),
        tie_word_embeddings=a.flag("tie_word_embeddings", True),
    )
    if arch.n_expert and not (0 < arch.n_expert_used < arch.n_expert and arch.active_params):
        raise InvalidData(f"{origin}: a mixture of experts (arch.n_expert > 0) needs "
                          "0 < n_expert_used < n_expert and active_params")
    variants = []
    for v in f.tables("variants"):
        fmt = v.text("format", "gguf")
        if fmt not in FORMATS:
            raise InvalidData(f"{origin}: field '{v.prefix}format' must be gguf or onnx")
        quant = v.text("quant").upper()
        kld = v.data.get("quality_kld", quality.MEAN_KLD.get(quant))
        if kld is None:
            raise InvalidData(
                f"{origin}: field '{v.prefix}quality_kld' is needed for quant {quant} "
                "(no default known)"
            )
        variants.append(
            Variant(
                name=v.text("name"),
                format=fmt,
                quant=quant,
                size_bytes=v.whole("size_bytes", minimum=1),
                bits_per_weight=v.number("bits_per_weight",
                                         quality.BITS_PER_WEIGHT.get(quant, 0.0)),
                quality_kld=float(kld),
                quality_source=v.text("quality_source", quality.SOURCE),
                source=v.text("source"),
                sha256=v.text("sha256", ""),
                execution_provider=v.text("execution_provider", ""),
                expert_bits_per_weight=v.number("expert_bits", 0.0),
            )
        )
    if arch.n_layer and not (arch.n_embd and arch.n_head and arch.n_head_kv and arch.n_vocab):
        raise InvalidData(f"{origin}: a language model (arch.n_layer > 0) needs n_embd, n_head, "
                          "n_head_kv and n_vocab > 0")
    names = [v.name for v in variants]
    if len(set(names)) != len(names):
        raise InvalidData(f"{origin}: variant names repeat: {', '.join(names)}")
    return ModelSpec(
        name=f.text("name"),
        title=f.text("title"),
        arch=arch,
        variants=tuple(variants),
        default_ctx=f.whole("default_ctx", 2048, minimum=1),
        builder=f.text("builder", ""),
        sources=f.texts("sources"),
    )
