"""Content-addressed model store: staged -> verified -> active, previous kept for rollback.

Layout under the data dir::

    store/incoming/<sha256>.part   an upload in progress (the controller writes here over SFTP)
    store/incoming/<sha256>        a finished upload, not yet verified
    store/blobs/<sha256>           verified bytes; the name is the content hash
    store/state.json               desired state: the active and previous model records, and
                                   whether the active one is still on trial

Names from the network are validated as 64 hex digits before they touch a path, so no request
can traverse out of the store. ``state.json`` is replaced atomically (write, fsync, rename), so a
crash at any point leaves either the old or the new state on disk, never a mix.
"""

from __future__ import annotations

import json
import os
import re
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from agent import failpoints
from agent.contract import RevertCause, sha256_file
from agent.errors import ChecksumMismatch, InvalidRequest, NotFound

_SHA256 = re.compile(r"[0-9a-f]{64}")
STALE_BLOB_S = 3600.0  # verified but never activated for an hour: collected on activation
STALE_UPLOAD_S = 7 * 24 * 3600.0  # an interrupted upload is kept a week for resumption


def check_sha256(value: str) -> str:
    if not _SHA256.fullmatch(value):
        raise InvalidRequest(f"not a sha256 hex digest: {value[:80]!r}")
    return value


@dataclass(frozen=True)
class ModelRecord:
    """What the store remembers about a model it can activate."""

    sha256: str
    name: str
    variant: str
    format: str
    n_ctx: int
    size_bytes: int

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelRecord:
        return cls(
            sha256=check_sha256(str(data["sha256"])),
            name=str(data.get("name", "")),
            variant=str(data.get("variant", "")),
            format=str(data.get("format", "gguf")),
            n_ctx=int(data.get("n_ctx", 0)),
            size_bytes=int(data.get("size_bytes", 0)),
        )


@dataclass(frozen=True)
class StoreState:
    active: ModelRecord | None = None
    previous: ModelRecord | None = None
    trial: bool = False  # the active model awaits CommitModel; a restart goes back
    trial_until: float = 0.0  # wall-clock time the trial is given up at (0: no deadline)
    reverted: str = ""  # sha256 of the last model on trial that was given up
    reverted_reason: str = ""
    reverted_cause: RevertCause = RevertCause.UNSPECIFIED
    staged: str = ""  # sha256 verified ahead of activation (pre-pull), kept from GC

    @property
    def pinned(self) -> set[str]:
        """The blobs the store must keep: active, previous (for rollback) and staged."""
        return {r.sha256 for r in (self.active, self.previous) if r} | (
            {self.staged} if self.staged else set())


class ModelStore:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.incoming_dir = root / "incoming"
        self.blobs_dir = root / "blobs"
        self.state_path = root / "state.json"
        self.incoming_dir.mkdir(parents=True, exist_ok=True)
        self.blobs_dir.mkdir(parents=True, exist_ok=True)

    def blobs(self) -> list[str]:
        return sorted(p.name for p in self.blobs_dir.iterdir() if _SHA256.fullmatch(p.name))

    def used_bytes(self) -> int:
        """Bytes held in blobs and uploads (what an emulated disk limit counts)."""
        return sum(p.stat().st_size for d in (self.blobs_dir, self.incoming_dir)
                   for p in d.iterdir() if p.is_file())

    def blob_path(self, sha256: str) -> Path:
        path = self.blobs_dir / check_sha256(sha256)
        if not path.is_file():
            raise NotFound(f"blob {sha256[:12]} is not in the store")
        return path

    def verify_staged(self, sha256: str) -> Path:
        """Move a finished upload into ``blobs/`` once its bytes hash to its name.

        A blob already verified is returned as is. A mismatching upload is deleted, so a retry
        starts clean, and ``ChecksumMismatch`` is raised.
        """
        check_sha256(sha256)
        blob = self.blobs_dir / sha256
        if blob.is_file():
            return blob
        staged = self.incoming_dir / sha256
        if not staged.is_file():
            raise NotFound(f"blob {sha256[:12]} is neither stored nor staged "
                           f"in {self.incoming_dir}")
        actual = sha256_file(staged)
        if actual != sha256:
            staged.unlink(missing_ok=True)
            raise ChecksumMismatch(
                f"staged file hashes to {actual[:12]}, expected {sha256[:12]}; deleted it"
            )
        failpoints.hit("verify.before_move")
        os.replace(staged, blob)
        _fsync_dir(self.blobs_dir)
        failpoints.hit("verify.after_move")
        return blob

    def read_state(self) -> StoreState:
        try:
            data = json.loads(self.state_path.read_text())
        except FileNotFoundError:
            return StoreState()
        active = data.get("active")
        previous = data.get("previous")
        return StoreState(
            active=ModelRecord.from_dict(active) if active else None,
            previous=ModelRecord.from_dict(previous) if previous else None,
            trial=bool(data.get("trial", False)) and bool(active),
            trial_until=float(data.get("trial_until", 0.0)),
            reverted=str(data.get("reverted", "")),
            reverted_reason=str(data.get("reverted_reason", "")),
            reverted_cause=_cause(data.get("reverted_cause", 0)),
            staged=str(data.get("staged", "")),
        )

    def write_state(self, state: StoreState) -> None:
        data = {
            "active": asdict(state.active) if state.active else None,
            "previous": asdict(state.previous) if state.previous else None,
            "trial": state.trial,
            "trial_until": state.trial_until,
            "reverted": state.reverted,
            "reverted_reason": state.reverted_reason,
            "reverted_cause": int(state.reverted_cause),
            "staged": state.staged,
        }
        tmp = self.state_path.with_suffix(".tmp")
        with tmp.open("w") as fh:
            json.dump(data, fh, indent=2)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, self.state_path)
        _fsync_dir(self.root)

    def activate(self, record: ModelRecord, trial: bool = False,
                 trial_until: float = 0.0) -> StoreState:
        """Make ``record`` active; the old active becomes previous (kept for rollback).

        With ``trial`` the record stays on trial until ``commit`` (given up at ``trial_until``
        if set). Re-activating the model that is on trial keeps it on trial unless ``trial``
        is false.
        """
        old = self.read_state()
        previous = old.previous
        if old.active and old.active.sha256 != record.sha256:
            previous = old.active
            if old.trial:  # an unconfirmed model never becomes the rollback target
                previous = old.previous
        if previous and previous.sha256 == record.sha256:
            previous = None
        new = replace(old, active=record, previous=previous, trial=trial,
                      trial_until=trial_until if trial else 0.0,
                      staged="" if old.staged == record.sha256 else old.staged)
        failpoints.hit("activate.before_state")
        self.write_state(new)
        failpoints.hit("activate.after_state")
        # Only the model that just fell out of the rollback slot is deleted; blobs staged
        # ahead of activation (pre-pulled or awaiting a retry) stay until collect_garbage.
        for dropped in (old.previous, old.active):
            if dropped and dropped.sha256 not in new.pinned:
                (self.blobs_dir / dropped.sha256).unlink(missing_ok=True)
        self.collect_garbage(new, min_age_s=STALE_BLOB_S)
        return new

    def stage(self, sha256: str) -> int:
        """Verify an upload into ``blobs/`` and pin it for a later activation (one at a time:
        staging another unpins the first, which garbage collection may then take)."""
        blob = self.verify_staged(sha256)
        old = self.read_state()
        active = old.active.sha256 if old.active else ""
        if old.staged != sha256 and sha256 != active:
            self.write_state(replace(old, staged=sha256))
        return blob.stat().st_size

    def commit(self, sha256: str) -> None:
        """End the trial of the active model."""
        old = self.read_state()
        if old.active is None or old.active.sha256 != sha256:
            raise NotFound(f"model {sha256[:12]} is not the active model")
        if old.trial:
            self.write_state(replace(old, trial=False, trial_until=0.0))

    def give_up_trial(self, reason: str, cause: RevertCause) -> StoreState:
        """Record that the model on trial was given up; the previous model becomes active
        (or none). Returns the new state."""
        old = self.read_state()
        assert old.trial and old.active is not None
        new = replace(old, active=old.previous, previous=None, trial=False, trial_until=0.0,
                      reverted=old.active.sha256, reverted_reason=reason,
                      reverted_cause=cause)
        self.write_state(new)
        return new

    def deactivate(self) -> None:
        old = self.read_state()
        self.write_state(replace(old, active=None, previous=old.active or old.previous,
                                 trial=False, trial_until=0.0))

    def collect_garbage(self, state: StoreState, keep_extra: int = 0,
                        min_age_s: float = 0.0) -> list[str]:
        """Delete blobs other than active and previous, keeping the ``keep_extra`` newest and
        any younger than ``min_age_s`` (staged ahead of activation); and stale uploads."""
        keep = state.pinned
        now = time.time()
        others = sorted(
            (p for p in self.blobs_dir.iterdir() if p.name not in keep),
            key=lambda p: p.stat().st_mtime,
            reverse=True,
        )
        removed = []
        for path in others[keep_extra:]:
            if now - path.stat().st_mtime < min_age_s:
                continue
            path.unlink(missing_ok=True)
            removed.append(path.name)
        for part in self.incoming_dir.iterdir():
            if now - part.stat().st_mtime > STALE_UPLOAD_S:
                part.unlink(missing_ok=True)
        return removed


def _cause(value: object) -> RevertCause:
    try:
        return RevertCause(int(value))  # type: ignore[call-overload]
    except (TypeError, ValueError):
        return RevertCause.UNSPECIFIED


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
