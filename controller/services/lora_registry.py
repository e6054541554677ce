"""The controller's LoRA adapters: ``fleet adapter add|list``.

An adapter is kept per base model under ``$FLEET_HOME/adapters/<base>/<name>.gguf`` with a
``<name>.json`` beside it (its sha256, size and what its header says), written atomically.
It is checked against a cached GGUF variant of its base before it is kept
(``controller.core.lora``): a file llama.cpp would refuse on the device never leaves here.
Every quantized variant of a base shares its tensor names and shapes, so one check holds for
all of them.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

from agent.contract import sha256_file
from controller import settings
from controller.adapters.data_files import load_model
from controller.adapters.gguf_header import read_header
from controller.core.lora import check_lora
from controller.core.models import ModelSpec
from controller.errors import ArtifactError, UsageError
from controller.services.context import Fleet

NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,62}")


@dataclass(frozen=True)
class AdapterEntry:
    name: str
    base: str
    sha256: str
    size_bytes: int
    architecture: str
    alpha: float
    rank: int
    targets: tuple[str, ...]
    checked_with: str  # the base variant whose header it was checked against
    path: str


def adapters_dir() -> Path:
    return settings.fleet_home() / "adapters"


def _base_file(fleet: Fleet, model: ModelSpec) -> tuple[str, Path]:
    for variant in model.variants:
        if variant.format != "gguf":
            continue
        local = fleet.artifacts.local(model, variant)
        path = local.path if local else fleet.artifacts.path_for(model, variant)
        if path.is_file():
            return variant.name, path
    hint = (f"`fleet model build {model.name}`" if model.builder else
            f"`fleet model import {model.name} VARIANT FILE` (any GGUF variant)")
    raise ArtifactError(f"no GGUF variant of {model.name} is in the local model cache to check "
                        "the adapter against", hint=hint)


def add(fleet: Fleet, name: str, base: str, source: Path, replace: bool = False
        ) -> AdapterEntry:
    """Check ``source`` against ``base`` and keep it as adapter ``name`` of that base."""
    if not NAME.fullmatch(name):
        raise UsageError(f"bad adapter name {name!r}",
                         hint="lower-case letters, digits, - and _, at most 63, e.g. kiosk-faq")
    model = load_model(base)
    if not source.is_file():
        raise UsageError(f"{source}: no such file", hint="give the adapter's .gguf file")
    variant, base_path = _base_file(fleet, model)
    facts = check_lora(read_header(source), read_header(base_path), label=source.name)
    sha = sha256_file(source)
    home = adapters_dir() / model.name
    target, meta = home / f"{name}.gguf", home / f"{name}.json"
    old = _read(meta) if meta.is_file() else None
    if old is not None and old.sha256 == sha:
        return old
    if old is not None and not replace:
        raise UsageError(f"{model.name} already has an adapter {name!r} "
                         f"(sha256 {old.sha256[:12]}, another file)",
                         hint="add --replace to make this file the new version")
    home.mkdir(parents=True, exist_ok=True)
    tmp = target.with_suffix(".tmp")
    shutil.copyfile(source, tmp)
    if sha256_file(tmp) != sha:
        tmp.unlink(missing_ok=True)
        raise ArtifactError(f"{source} changed while it was copied", hint="add it again")
    entry = AdapterEntry(name=name, base=model.name, sha256=sha, size_bytes=tmp.stat().st_size,
                         architecture=facts.architecture, alpha=facts.alpha, rank=facts.rank,
                         targets=facts.targets, checked_with=variant, path=str(target))
    os.replace(tmp, target)
    meta_tmp = meta.with_suffix(".json.tmp")
    meta_tmp.write_text(json.dumps(asdict(entry), indent=2))
    os.replace(meta_tmp, meta)
    return entry


def _read(meta: Path) -> AdapterEntry:
    data = json.loads(meta.read_text())
    return AdapterEntry(**{**data, "targets": tuple(data.get("targets", ()))})


def list_adapters(base: str = "") -> list[AdapterEntry]:
    root = adapters_dir()
    if not root.is_dir():
        return []
    metas = sorted(root.glob(f"{base}/*.json" if base else "*/*.json"))
    return [_read(m) for m in metas]


def get(base: str, name: str) -> AdapterEntry:
    meta = adapters_dir() / base / f"{name}.json"
    if not meta.is_file():
        known = ", ".join(e.name for e in list_adapters(base)) or "none"
        raise UsageError(f"{base} has no adapter {name!r} (it has: {known})",
                         hint=f"`fleet adapter add {name} --base {base} FILE.gguf`")
    return _read(meta)
