"""What the controller and the agents agree on for peer transfers (devices of a site seeding
each other; docs/delivery.md#sites-and-peers), in one place.

Imports nothing of either side (an import-linter contract checks), like ``agent.contract``.

A blob is cut into chunks of ``chunk_bytes`` (the last one shorter). The controller hashes each
chunk when it hashes the file, and signs, in an instruction (the *grant*), the sha256 of the
concatenated chunk digests, so every hop can verify each chunk as it arrives and serve only
chunks it verified, long before the whole-file sha256 can be checked.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path

MIB = 1024 * 1024

# The common name of a device's peer (client) certificate: "peer:<device>". A device name
# never holds a colon, so no peer certificate can pass for the controller or a device's agent.
PEER_CN_PREFIX = "peer:"
# Chunks are what a hop verifies before passing on: the smaller, the closer each device of a
# chain runs behind the one before it; the grant carries the size used. At most MAX_CHUNKS
# digests (512 KiB of them) per blob: 1 MiB chunks up to 16 GiB, larger beyond.
MIN_CHUNK_BYTES = 1 * MIB
MAX_CHUNKS = 16384
PIECE_BYTES = 1 * MIB  # one ReadBlob message at most (gRPC allows 4 MiB by default)
GRANT_KIND = "peer-fetch"
GRANT_TTL_S = 24 * 3600  # a grant outlives a slow overnight pre-seed, not a week
# the instruction's keys, all required
GRANT_KEYS = ("kind", "sha256", "size_bytes", "chunk_bytes", "chunks_sha256", "receiver",
              "sources", "rollout", "issued_at", "expires_at")
# The gRPC method prefix a peer certificate may call; every other method refuses it.
PEER_METHOD_PREFIX = "/edgefleet.agent.v1.Peer/"


def peer_common_name(device: str) -> str:
    return PEER_CN_PREFIX + device


def chunk_bytes_for(size_bytes: int) -> int:
    """The chunk size the controller uses for a blob: 1 MiB, doubled until the blob has at
    most ``MAX_CHUNKS`` chunks."""
    chunk = MIN_CHUNK_BYTES
    while chunk * MAX_CHUNKS < size_bytes:
        chunk *= 2
    return chunk


def chunk_count(size_bytes: int, chunk_bytes: int) -> int:
    return max(0, -(-size_bytes // chunk_bytes))


def chunk_span(index: int, size_bytes: int, chunk_bytes: int) -> tuple[int, int]:
    """[start, end) of chunk ``index``."""
    start = index * chunk_bytes
    return start, min(start + chunk_bytes, size_bytes)


def chunks_sha256(digests: Sequence[bytes]) -> str:
    """The hex sha256 of the concatenated 32-byte chunk digests (what the grant signs)."""
    return hashlib.sha256(b"".join(digests)).hexdigest()


def file_chunks(path: Path, chunk_bytes: int) -> tuple[str, list[bytes]]:
    """One read of ``path``: its whole sha256 (hex) and the sha256 of each chunk."""
    whole = hashlib.sha256()
    digests: list[bytes] = []
    with path.open("rb") as fh:
        while block := fh.read(chunk_bytes):
            whole.update(block)
            digests.append(hashlib.sha256(block).digest())
    return whole.hexdigest(), digests
