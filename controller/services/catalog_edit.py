"""`fleet model add` and `fleet model quantize`: grow the user's catalog from local files.

Entries are written to the user catalog directory (``$FLEET_CATALOG_DIR`` or
``$FLEET_HOME/catalog``), where they override a shipped entry of the same name.
"""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path

from agent.contract import sha256_file
from controller import settings, testmodels
from controller.adapters.catalog_out import write_model
from controller.adapters.data_files import load_catalog, load_model
from controller.adapters.gguf_header import read_architecture, read_quant
from controller.artifacts import LocalArtifact
from controller.core import quality
from controller.core.catalog import parse_model
from controller.core.models import ModelSpec, Variant
from controller.errors import UsageError
from controller.services.context import Fleet

_NAME = re.compile(r"[a-z0-9][a-z0-9_.-]{0,62}")


def _variant_name(quant: str) -> str:
    return quant.lower()


def add_gguf(fleet: Fleet, name: str, path: Path, title: str = "") -> ModelSpec:
    """Register a local GGUF as a new model (or a new variant of the user's model)."""
    if not _NAME.fullmatch(name):
        raise UsageError(f"invalid model name {name!r}",
                         hint="lower-case letters, digits, '.', '_' and '-'")
    if not path.is_file():
        raise UsageError(f"no such file: {path}", hint="give the path of a .gguf file")
    arch = read_architecture(path)
    quant = read_quant(path) or "F16"
    kld = quality.MEAN_KLD.get(quant)
    if kld is None:
        raise UsageError(f"{path.name}: file type {quant} has no known quality figure",
                         hint="add it by hand to the catalog with quality_kld set")
    variant = Variant(
        name=_variant_name(quant), format="gguf", quant=quant, size_bytes=path.stat().st_size,
        bits_per_weight=quality.BITS_PER_WEIGHT.get(quant, 0.0), quality_kld=kld,
        quality_source=quality.SOURCE, source=f"local://{name}/{path.name}",
        sha256=sha256_file(path))
    existing = load_catalog().get(name)
    if existing is not None and existing.variant(variant.name) is not None:
        raise UsageError(f"{name} already has a variant {variant.name}",
                         hint="use another model name or remove that entry first")
    spec = existing or ModelSpec(name=name, title=title or name, arch=arch, variants=(),
                                 default_ctx=min(4096, arch.n_ctx_train),
                                 sources=(f"added from {path.name} (GGUF header)",))
    spec = replace(spec, variants=(*spec.variants, variant))
    parse_model(_round_trip(spec), "<new entry>")  # never write what would not load back
    fleet.artifacts.import_file(spec, variant, path)
    write_model(settings.user_catalog_dir(), spec, f"added by `fleet model add {name}`")
    return spec


def _round_trip(spec: ModelSpec) -> dict[str, object]:
    import sys

    from controller.adapters.catalog_out import model_toml

    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover
        import tomli as tomllib
    return tomllib.loads(model_toml(spec, "check"))


def quantize(fleet: Fleet, name: str, source: str, targets: list[str]) -> list[LocalArtifact]:
    """Build GGUF variants from ``source`` with llama.cpp and add them to the user catalog."""
    model = load_model(name)
    base = model.variant(source)
    if base is None:
        raise UsageError(f"{name} has no variant {source!r}",
                         hint=f"variants: {', '.join(v.name for v in model.variants)}")
    if base.format == "onnx":
        return _quantize_onnx(fleet, model, base, targets)
    bad = [t for t in targets if t not in testmodels.FTYPES]
    if not targets or bad:
        raise UsageError(f"unknown quantization {', '.join(bad) or '(none)'}",
                         hint=f"choose from {', '.join(sorted(testmodels.FTYPES))}")
    src = fleet.artifacts.verify(model, base)
    built, variants = [], list(model.variants)
    for target in targets:
        quant = target.upper()
        out = src.path.parent / f"{name}-{target}.gguf"
        testmodels.quantize_gguf(src.path, out, target)
        variant = Variant(
            name=target, format="gguf", quant=quant, size_bytes=out.stat().st_size,
            bits_per_weight=quality.BITS_PER_WEIGHT.get(quant, 0.0),
            quality_kld=quality.MEAN_KLD.get(quant, 0.1), quality_source=quality.SOURCE,
            source=f"local://{name}/{out.name}", sha256=sha256_file(out))
        variants = [v for v in variants if v.name != target] + [variant]
        built.append(fleet.artifacts.import_file(replace(model, variants=tuple(variants)),
                                                 variant, out))
    spec = replace(model, variants=tuple(variants))
    write_model(settings.user_catalog_dir(), spec,
                f"written by `fleet model quantize {name} --from {source}`")
    return built


ONNX_INT8_KLD = 0.001  # no published figure for dynamic int8 weights; stated as assumed


def _quantize_onnx(fleet: Fleet, model: ModelSpec, base: Variant,
                   targets: list[str]) -> list[LocalArtifact]:
    """ONNX: dynamic int8 quantization with onnxruntime.quantization."""
    if targets != ["int8"]:
        raise UsageError(f"ONNX variants quantize to int8 only, not {', '.join(targets)}",
                         hint="--to int8")
    src = fleet.artifacts.verify(model, base)
    out = src.path.parent / f"{model.name}-int8.onnx"
    testmodels.quantize_onnx_int8(src.path, out)
    variant = Variant(
        name="int8", format="onnx", quant="INT8", size_bytes=out.stat().st_size,
        bits_per_weight=8.0, quality_kld=ONNX_INT8_KLD,
        quality_source="assumed for dynamic int8 weights (onnxruntime.quantization); "
        "not a measurement", source=f"local://{model.name}/{out.name}", sha256=sha256_file(out),
        execution_provider=base.execution_provider)
    variants = [v for v in model.variants if v.name != "int8"] + [variant]
    spec = replace(model, variants=tuple(variants))
    built = [fleet.artifacts.import_file(spec, variant, out)]
    write_model(settings.user_catalog_dir(), spec,
                f"written by `fleet model quantize {model.name} --from {base.name} --to int8`")
    return built
