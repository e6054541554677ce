"""Per-chunk sha256 of a cached model file, for peer transfers (agent.peer_contract).

Computed in the same read as a fresh whole-file hash, so the chunk list provably describes
the bytes the rollout sends, and kept beside the file (``.chunks/<sha256>.<chunk_bytes>``,
32 bytes per chunk) so a resume or the next deploy of the same file does not read it again.
"""

from __future__ import annotations

import os
from pathlib import Path

from agent.peer_contract import chunk_bytes_for, chunk_count, file_chunks
from controller.core.fanout import ChunkList
from controller.errors import ArtifactError


def chunk_list(path: Path, sha256: str, size_bytes: int, chunk_bytes: int = 0) -> ChunkList:
    """The chunk list of ``path`` (``chunk_bytes``: by default ``chunk_bytes_for`` its size),
    whose sha256 must be ``sha256``. Raises ArtifactError when the file no longer hashes to
    it."""
    chunk_bytes = chunk_bytes or chunk_bytes_for(size_bytes)
    cache = path.parent / ".chunks" / f"{sha256}.{chunk_bytes}"
    count = chunk_count(size_bytes, chunk_bytes)
    try:
        raw = cache.read_bytes()
    except OSError:
        raw = b""
    if len(raw) == 32 * count and count:
        return ChunkList(chunk_bytes, tuple(raw[i:i + 32] for i in range(0, len(raw), 32)))
    whole, digests = file_chunks(path, chunk_bytes)
    if whole != sha256:
        raise ArtifactError(f"{path} hashes to {whole[:12]}, the rollout sends "
                            f"{sha256[:12]}: it changed since it was checked",
                            hint="restore the file (`fleet model build` or `fleet model "
                            "import`), or abort the rollout")
    try:
        cache.parent.mkdir(exist_ok=True)
        tmp = cache.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_bytes(b"".join(digests))
        os.replace(tmp, cache)
    except OSError:
        pass  # a read-only cache only costs a read next time
    return ChunkList(chunk_bytes, tuple(digests))
