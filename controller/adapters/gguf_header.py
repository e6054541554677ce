"""Read architecture numbers from a GGUF file's own header, so estimates work air-gapped."""

from __future__ import annotations

from pathlib import Path

from controller.core.models import Architecture
from controller.errors import ArtifactError


def read_architecture(path: Path) -> Architecture:
    import gguf

    try:
        reader = gguf.GGUFReader(str(path))
    except (ValueError, OSError) as exc:
        raise ArtifactError(f"{path}: not a readable GGUF file ({exc})") from exc

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
