"""Trust in stored bytes: fingerprints of verified blobs, and a quarantine for corrupt ones.

A blob is hashed when it arrives (``ModelStore.verify_staged``). Its fingerprint right after
(size, mtime_ns, inode, ctime_ns) is recorded in ``store/verified.json``. Before any
activation (a deploy, a restore after restart, a switch back to a held blob, a worker restart)
the store compares the blob's fingerprint with the recorded one: equal, the bytes are trusted
without reading them, because any write through the file system moves ctime, which no user
can set back; different or unknown, the blob is hashed again before use. What a fingerprint
cannot see (bits rotting under the file system) the background scrub (``agent.scrub``) finds
by re-hashing every blob at a bounded rate.

A blob that does not hash to its name is moved to ``store/quarantine/<sha256>`` with a record
``<sha256>.json`` beside it (what it hashed to, why, found by what, when). It is never
activated and never deleted silently: its bytes are freed only to make room for an upload,
and the record stays. The store no longer holds it, so the next deploy sends it again.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

CHUNK = 1 << 20


@dataclass(frozen=True)
class Fingerprint:
    """What a cheap ``stat`` says about a file; any write through the file system changes it."""

    size: int
    mtime_ns: int
    ino: int
    ctime_ns: int

    @classmethod
    def of(cls, path: Path) -> Fingerprint:
        st = os.stat(path)
        return cls(st.st_size, st.st_mtime_ns, st.st_ino, st.st_ctime_ns)


def allocated_bytes(path: Path) -> int:
    """Bytes a file really occupies on disk (a sparse or preallocated file: less than its
    size), 0 if it is gone."""
    try:
        return os.stat(path).st_blocks * 512
    except FileNotFoundError:
        return 0


def hash_file(path: Path, rate_bytes_per_s: float = 0.0,
              stop: Callable[[], bool] = lambda: False) -> tuple[str, Fingerprint | None]:
    """sha256 of ``path``, read at most at ``rate_bytes_per_s`` (0: as fast as the disk goes).

    Returns the digest and the file's fingerprint, or None for the fingerprint when the file
    changed while it was read (the digest then proves nothing about the file as it is now).
    Raises InterruptedError when ``stop()`` turns true midway.
    """
    before = Fingerprint.of(path)
    digest = hashlib.sha256()
    started = time.monotonic()
    done = 0
    with path.open("rb") as fh:
        while block := fh.read(CHUNK):
            digest.update(block)
            done += len(block)
            if rate_bytes_per_s > 0:
                ahead = done / rate_bytes_per_s - (time.monotonic() - started)
                if ahead > 0:
                    time.sleep(ahead)
            if stop():
                raise InterruptedError(f"hashing {path.name[:12]} was stopped")
    after = Fingerprint.of(path)
    return digest.hexdigest(), (after if _same_content_stat(before, after) else None)


def _same_content_stat(a: Fingerprint, b: Fingerprint) -> bool:
    return (a.size, a.mtime_ns, a.ino, a.ctime_ns) == (b.size, b.mtime_ns, b.ino, b.ctime_ns)


@dataclass(frozen=True)
class QuarantineRecord:
    sha256: str
    actual_sha256: str
    reason: str
    found_by: str  # load | restore | check | watch | scrub
    quarantined_at: float
    size_bytes: int
    bytes_kept: bool = True

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> QuarantineRecord:
        return cls(str(data["sha256"]), str(data.get("actual_sha256", "")),
                   str(data.get("reason", "")), str(data.get("found_by", "")),
                   float(data.get("quarantined_at", 0.0)), int(data.get("size_bytes", 0)),
                   bool(data.get("bytes_kept", True)))


class BlobLedger:
    """Fingerprints of verified blobs (``verified.json``) and the quarantine directory."""

    def __init__(self, root: Path) -> None:
        self.path = root / "verified.json"
        self.quarantine_dir = root / "quarantine"
        self.quarantine_dir.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()

    def _read(self) -> dict[str, dict[str, int]]:
        try:
            data = json.loads(self.path.read_text())
        except (FileNotFoundError, ValueError):
            return {}  # unknown fingerprints only cost a re-hash
        return data if isinstance(data, dict) else {}

    def _write(self, data: dict[str, dict[str, int]]) -> None:
        tmp = self.path.with_suffix(".tmp")
        with tmp.open("w") as fh:
            json.dump(data, fh, indent=1, sort_keys=True)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, self.path)

    def record(self, sha256: str, fingerprint: Fingerprint) -> None:
        """``sha256``'s bytes were hashed and matched while the file had ``fingerprint``."""
        with self._lock:
            data = self._read()
            data[sha256] = asdict(fingerprint)
            self._write(data)

    def forget(self, sha256: str) -> None:
        with self._lock:
            data = self._read()
            if data.pop(sha256, None) is not None:
                self._write(data)

    def trusted(self, sha256: str, path: Path) -> bool:
        """True when ``path`` is, by a cheap stat, exactly as it was when it was verified."""
        with self._lock:
            known = self._read().get(sha256)
        if not known:
            return False
        try:
            now = Fingerprint.of(path)
        except FileNotFoundError:
            return False
        return asdict(now) == known

    def prune(self, present: set[str]) -> None:
        """Drop fingerprints of blobs no longer in the store."""
        with self._lock:
            data = self._read()
            stale = [sha for sha in data if sha not in present]
            for sha in stale:
                del data[sha]
            if stale:
                self._write(data)

    # -- quarantine -----------------------------------------------------------------------
    def quarantine(self, sha256: str, path: Path, actual: str, reason: str,
                   found_by: str) -> QuarantineRecord:
        """Move ``path`` aside with a record of why; the blob is no longer in the store."""
        record = QuarantineRecord(sha256, actual, reason, found_by, time.time(),
                                  path.stat().st_size if path.exists() else 0,
                                  bytes_kept=path.exists())
        with self._lock:
            if path.exists():
                os.replace(path, self.quarantine_dir / sha256)
            self._write_record(record)
            data = self._read()
            if data.pop(sha256, None) is not None:
                self._write(data)
        return record

    def _write_record(self, record: QuarantineRecord) -> None:
        target = self.quarantine_dir / f"{record.sha256}.json"
        tmp = target.with_suffix(".tmp")
        tmp.write_text(json.dumps(asdict(record), indent=1))
        os.replace(tmp, target)

    def quarantined(self) -> list[QuarantineRecord]:
        out = []
        for path in sorted(self.quarantine_dir.glob("*.json")):
            try:
                out.append(QuarantineRecord.from_dict(json.loads(path.read_text())))
            except (OSError, ValueError, KeyError):
                continue
        return sorted(out, key=lambda r: r.quarantined_at)

    def quarantined_bytes(self) -> list[Path]:
        return [p for p in self.quarantine_dir.iterdir()
                if p.is_file() and not p.name.endswith((".json", ".tmp"))]

    def free_quarantined(self, path: Path) -> int:
        """Delete one quarantined copy to make room; its record stays, marked."""
        freed = allocated_bytes(path)
        with self._lock:
            path.unlink(missing_ok=True)
            record_path = self.quarantine_dir / f"{path.name}.json"
            try:
                record = QuarantineRecord.from_dict(json.loads(record_path.read_text()))
            except (OSError, ValueError, KeyError):
                return freed
            data = asdict(record)
            data["bytes_kept"] = False
            data["reason"] = record.reason + "; bytes freed to make room for an upload"
            self._write_record(QuarantineRecord.from_dict(data))
        return freed
