"""Write a catalog entry as TOML (the schema is small: no general TOML writer needed)."""

from __future__ import annotations

import json
import os
from pathlib import Path

from controller.core.models import ModelSpec


def _value(v: object) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_value(x) for x in v) + "]"
    return json.dumps(str(v))  # a TOML basic string is a JSON string


def model_toml(spec: ModelSpec, note: str) -> str:
    a = spec.arch
    lines = [f"# {note}", f"name = {_value(spec.name)}", f"title = {_value(spec.title)}",
             f"default_ctx = {spec.default_ctx}", f"sources = {_value(list(spec.sources))}"]
    if spec.builder:
        lines.append(f"builder = {_value(spec.builder)}")
    lines += ["", "[arch]", f"n_layer = {a.n_layer}", f"n_embd = {a.n_embd}",
              f"n_head = {a.n_head}", f"n_head_kv = {a.n_head_kv}",
              f"n_ctx_train = {a.n_ctx_train}", f"n_vocab = {a.n_vocab}", f"params = {a.params}"]
    if a.active_params:
        lines.append(f"active_params = {a.active_params}")
    if a.head_dim_override:
        lines.append(f"head_dim = {a.head_dim_override}")
    if a.n_head_kv_layers:
        lines.append(f"n_head_kv_layers = {_value(list(a.n_head_kv_layers))}")
    for v in spec.variants:
        lines += ["", "[[variants]]", f"name = {_value(v.name)}", f"format = {_value(v.format)}",
                  f"quant = {_value(v.quant)}", f"size_bytes = {v.size_bytes}",
                  f"quality_kld = {v.quality_kld!r}",
                  f"quality_source = {_value(v.quality_source)}",
                  f"source = {_value(v.source)}"]
        if v.sha256:
            lines.append(f"sha256 = {_value(v.sha256)}")
        if v.execution_provider:
            lines.append(f"execution_provider = {_value(v.execution_provider)}")
    return "\n".join(lines) + "\n"


def write_model(directory: Path, spec: ModelSpec, note: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{spec.name}.toml"
    tmp = path.with_suffix(".tmp")
    tmp.write_text(model_toml(spec, note))
    os.replace(tmp, path)
    return path
