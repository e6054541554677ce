"""Files that hold secrets, written so that nobody else can read them at any moment.

A private file is created 0600 with ``O_CREAT | O_EXCL`` under a temporary name (a stale
temporary file is removed first, never reused), written, flushed to disk and renamed into
place: no window in which it exists with wider permissions, and no half-written key after a
crash. Its directory is created 0700 (an older, wider one is narrowed).
"""

from __future__ import annotations

import os
import stat
from pathlib import Path


def private_dir(path: Path) -> Path:
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    if stat.S_IMODE(path.stat().st_mode) & 0o077:
        path.chmod(0o700)
    return path


def _write(path: Path, data: bytes, mode: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    os.replace(tmp, path)


def write_private(path: Path, data: bytes) -> None:
    """``data`` at ``path``, readable by its owner only (0600) from the first byte."""
    _write(path, data, 0o600)


def write_public(path: Path, data: bytes) -> None:
    """A certificate or public key: atomically replaced, 0644."""
    _write(path, data, 0o644)
