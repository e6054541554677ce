"""Read architecture numbers from a GGUF file's own header, so estimates work air-gapped."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from controller.core.lora import GgufHeader
from controller.core.models import Architecture
from controller.errors import ArtifactError


def read_quant(path: Path) -> str:
    """The file type llama.cpp wrote (general.file_type), e.g. ``Q4_K_M``; '' if absent."""
    import gguf

    reader = _reader(path)
    field = reader.fields.get("general.file_type")
    if field is None:
        return ""
    value = int(field.parts[field.data[0]][0])
    try:
        name = gguf.LlamaFileType(value).name
    except ValueError:
        return ""
    return name.removeprefix("MOSTLY_").replace("ALL_", "")


def _reader(path: Path) -> Any:
    import gguf

    try:
        return gguf.GGUFReader(str(path))
    except (ValueError, OSError) as exc:
        raise ArtifactError(f"{path}: not a readable GGUF file ({exc})",
                            hint="is it a complete .gguf download?") from exc


def read_architecture(path: Path) -> Architecture:
    reader = _reader(path)

    def scalar(key: str, default: int | None = None) -> int:
        field = reader.fields.get(key)
        if field is None:
            if default is None:
                raise ArtifactError(f"{path}: GGUF header has no {key}")
            return default
        return int(field.parts[field.data[0]][0])

    arch_name = bytes(reader.fields["general.architecture"].parts[-1]).decode()
    p = arch_name
    tokens = reader.fields.get("tokenizer.ggml.tokens")
    n_vocab = len(tokens.data) if tokens is not None else 0
    params = sum(int(t.n_elements) for t in reader.tensors)
    n_head = scalar(f"{p}.attention.head_count")
    return Architecture(
        n_layer=scalar(f"{p}.block_count"),
        n_embd=scalar(f"{p}.embedding_length"),
        n_head=n_head,
        n_head_kv=scalar(f"{p}.attention.head_count_kv", n_head),
        n_ctx_train=scalar(f"{p}.context_length"),
        n_vocab=n_vocab,
        params=params,
    )


def read_header(path: Path) -> GgufHeader:
    """Metadata scalars and strings (arrays left out) and every tensor's shape (ggml order)."""
    import gguf

    reader = _reader(path)
    meta: dict[str, str | float] = {}
    for key, field in reader.fields.items():
        if not field.types or field.types[0] == gguf.GGUFValueType.ARRAY:
            continue
        if field.types[0] == gguf.GGUFValueType.STRING:
            meta[key] = bytes(field.parts[-1]).decode(errors="replace")
        else:
            meta[key] = float(field.parts[field.data[0]][0])
    shapes = {t.name: tuple(int(n) for n in t.shape) for t in reader.tensors}
    return GgufHeader(meta, shapes)
