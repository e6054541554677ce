"""Content-addressed model store: staged -> verified -> active, previous kept for rollback.

Layout under the data dir::

    store/incoming/<sha256>.part   an upload in progress (the controller writes here over SFTP)
    store/incoming/<sha256>        a finished upload, not yet verified
    store/blobs/<sha256>           verified bytes; the name is the content hash
    store/state.json               desired state: the active and previous model records,
                                   whether the active one is still on trial, the highest
                                   manifest version accepted (agent.manifest_check), and the
                                   LoRA adapters held for those models (agent.adapters)
    store/verified.json            fingerprint of each blob when it was last hashed
    store/quarantine/<sha256>      bytes that no longer hash to their name (+ <sha256>.json)

Names from the network are validated as 64 hex digits before they touch a path, so no request
can traverse out of the store. ``state.json`` is replaced atomically (write, fsync, rename), so a
crash at any point leaves either the old or the new state on disk, never a mix.

No byte is activated unless it was hashed since it was last at rest, or its fingerprint proves
it unchanged since (``agent.integrity``); a blob that fails is quarantined and no longer held.
"""

from __future__ import annotations

import json
import logging
import os
import re
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from agent import failpoints
from agent.contract import RevertCause
from agent.errors import BlobCorrupt, ChecksumMismatch, InvalidRequest, NotFound
from agent.integrity import BlobLedger, Fingerprint, QuarantineRecord, allocated_bytes, hash_file

log = logging.getLogger("edgefleet.agent")

_SHA256 = re.compile(r"[0-9a-f]{64}")
STALE_BLOB_S = 3600.0  # verified but never activated for an hour: collected on activation
STALE_UPLOAD_S = 7 * 24 * 3600.0  # an interrupted upload is kept a week for resumption
# an upload of another blob untouched this long may be freed to make room (a concurrent
# deploy's upload in progress is younger)
IDLE_UPLOAD_S = 600.0
CHUNK = 1 << 20


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
class AdapterRecord:
    """A LoRA adapter the store holds for a base model (by the base's sha256)."""

    sha256: str
    name: str
    base_sha256: str
    size_bytes: int

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> AdapterRecord:
        return cls(sha256=check_sha256(str(data["sha256"])), name=str(data["name"]),
                   base_sha256=check_sha256(str(data["base_sha256"])),
                   size_bytes=int(data.get("size_bytes", 0)))


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
    # the highest signed manifest version accepted: a load must carry a greater one, so a
    # captured manifest cannot be played again, here or after a restart
    manifest_seq: int = 0
    # LoRA adapters: the committed ones, the one a request that names none runs with ("" =
    # the base alone), and the one on trial (it is the default until committed or given up)
    adapters: tuple[AdapterRecord, ...] = ()
    adapter_default: str = ""
    adapter_trial: AdapterRecord | None = None

    @property
    def pinned(self) -> set[str]:
        """The blobs the store must keep: active, previous (for rollback), staged, and the
        adapters held."""
        adapters = {a.sha256 for a in self.adapters} | (
            {self.adapter_trial.sha256} if self.adapter_trial else set())
        return {r.sha256 for r in (self.active, self.previous) if r} | (
            {self.staged} if self.staged else set()) | adapters


class ModelStore:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.incoming_dir = root / "incoming"
        self.blobs_dir = root / "blobs"
        self.state_path = root / "state.json"
        self.incoming_dir.mkdir(parents=True, exist_ok=True)
        self.blobs_dir.mkdir(parents=True, exist_ok=True)
        self.ledger = BlobLedger(root)

    def blobs(self) -> list[str]:
        return sorted(p.name for p in self.blobs_dir.iterdir() if _SHA256.fullmatch(p.name))

    def used_bytes(self) -> int:
        """Bytes the store occupies on disk (what an emulated disk limit counts): blocks
        allocated, so a preallocated sparse upload counts what was really written."""
        return sum(allocated_bytes(p) for d in (self.blobs_dir, self.incoming_dir,
                                                 self.ledger.quarantine_dir)
                   for p in d.iterdir() if p.is_file())

    def blob_path(self, sha256: str) -> Path:
        path = self.blobs_dir / check_sha256(sha256)
        if not path.is_file():
            raise NotFound(f"blob {sha256[:12]} is not in the store")
        return path

    def verify_staged(self, sha256: str, found_by: str = "load") -> Path:
        """The path of ``sha256``'s verified bytes, ready to activate.

        A blob already in ``blobs/`` is trusted by its fingerprint, or hashed again when that
        changed (``BlobCorrupt``, and quarantined, when it no longer matches, unless a fresh
        upload of it is waiting). A finished upload is hashed and moved into ``blobs/``; a
        mismatching upload is deleted, so a retry starts clean, and ``ChecksumMismatch`` is
        raised.
        """
        check_sha256(sha256)
        blob = self.blobs_dir / sha256
        staged = self.incoming_dir / sha256
        if blob.is_file():
            try:
                return self.trusted_blob(sha256, found_by)
            except BlobCorrupt:
                if not staged.is_file():
                    raise
        if not staged.is_file():
            raise NotFound(f"blob {sha256[:12]} is neither stored nor staged "
                           f"in {self.incoming_dir}")
        actual, fingerprint = hash_file(staged)
        if actual != sha256:
            staged.unlink(missing_ok=True)
            raise ChecksumMismatch(
                f"the uploaded file hashes to {actual[:12]}, expected {sha256[:12]} (it "
                "arrived corrupt); deleted it"
            )
        if fingerprint is None:
            raise ChecksumMismatch(f"upload {sha256[:12]} changed while it was verified "
                                   "(another upload of it still running?); send it again")
        failpoints.hit("verify.before_move")
        os.replace(staged, blob)
        _fsync_dir(self.blobs_dir)
        moved = Fingerprint.of(blob)  # a rename moves ctime only
        if (moved.size, moved.mtime_ns, moved.ino) != (
                fingerprint.size, fingerprint.mtime_ns, fingerprint.ino):
            return self.recheck(sha256, found_by)
        self.ledger.record(sha256, moved)
        failpoints.hit("verify.after_move")
        return blob

    def trusted_blob(self, sha256: str, found_by: str) -> Path:
        """A stored blob's path, checked by fingerprint or, when that changed, by hashing."""
        path = self.blob_path(sha256)
        if self.ledger.trusted(sha256, path):
            return path
        return self.recheck(sha256, found_by)

    def recheck(self, sha256: str, found_by: str, rate_bytes_per_s: float = 0.0,
                stop: Callable[[], bool] = lambda: False) -> Path:
        """Hash a stored blob now. Matching: its fingerprint is recorded and its path
        returned. Not matching: it is quarantined (and dropped from the state) and
        ``BlobCorrupt`` raised."""
        path = self.blob_path(sha256)
        actual, fingerprint = hash_file(path, rate_bytes_per_s, stop)
        if actual == sha256:
            if fingerprint is not None:
                self.ledger.record(sha256, fingerprint)
            return path
        record = self.quarantine(sha256, actual, found_by)
        raise BlobCorrupt(record.reason)

    def holds(self, sha256: str) -> bool:
        """True when the store holds ``sha256``'s bytes intact (checked as for activation)."""
        if not (self.blobs_dir / sha256).is_file():
            return False
        try:
            self.trusted_blob(sha256, "check")
        except (BlobCorrupt, NotFound):
            return False
        return True

    def quarantine(self, sha256: str, actual: str, found_by: str) -> QuarantineRecord:
        """Move a corrupt blob aside and forget it in the state: an active one gives way to the
        previous model (or none), a previous or staged one is no longer kept."""
        reason = (f"stored blob {sha256[:12]} hashes to {actual[:12]}: its bytes changed on "
                  f"the device's disk after they were verified (found at {found_by}); "
                  "quarantined, the next deploy sends it again")
        log.error("%s", reason)
        record = self.ledger.quarantine(sha256, self.blobs_dir / sha256, actual, reason,
                                        found_by)
        old = self.read_state()
        new = old
        if old.active and old.active.sha256 == sha256:
            new = replace(old, active=old.previous, previous=None, trial=False,
                          reverted=sha256, reverted_reason=reason)
        elif old.previous and old.previous.sha256 == sha256:
            new = replace(old, previous=None)
        if new.staged == sha256:
            new = replace(new, staged="")
        if new != old:
            self.write_state(new)
        return record

    def reclaimable(self, keep: str = "") -> list[Path]:
        """What may be freed to make room, cheapest loss first: quarantined copies, uploads of
        other blobs left idle, then blobs neither active, previous nor staged (oldest first).
        ``keep`` (the blob about to be sent) is never among them."""
        pinned = self.read_state().pinned | {keep}
        now = time.time()
        idle = [p for p in self.incoming_dir.iterdir()
                if p.is_file() and p.name.split(".")[0] != keep
                and now - p.stat().st_mtime > IDLE_UPLOAD_S]
        unpinned = sorted((p for p in self.blobs_dir.iterdir()
                           if p.is_file() and p.name not in pinned),
                          key=lambda p: p.stat().st_mtime)
        return [*self.ledger.quarantined_bytes(), *idle, *unpinned]

    def reclaimable_bytes(self, keep: str = "") -> int:
        return sum(allocated_bytes(p) for p in self.reclaimable(keep))

    def reclaim(self, need: int, keep: str = "") -> int:
        """Free at least ``need`` bytes if the store can (see ``reclaimable``); returns the
        bytes freed. Every deletion is logged."""
        freed = 0
        for path in self.reclaimable(keep):
            if freed >= need:
                break
            if path.parent == self.ledger.quarantine_dir:
                got = self.ledger.free_quarantined(path)
            else:
                got = allocated_bytes(path)
                path.unlink(missing_ok=True)
                self.ledger.forget(path.name)
            log.warning("freed %s (%d bytes) to make room for %s", path, got, keep[:12])
            freed += got
        return freed

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
            manifest_seq=int(data.get("manifest_seq", 0)),
            adapters=tuple(AdapterRecord.from_dict(a) for a in data.get("adapters", [])),
            adapter_default=str(data.get("adapter_default", "")),
            adapter_trial=(AdapterRecord.from_dict(data["adapter_trial"])
                           if data.get("adapter_trial") else None),
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
            "manifest_seq": state.manifest_seq,
            "adapters": [asdict(a) for a in state.adapters],
            "adapter_default": state.adapter_default,
            "adapter_trial": asdict(state.adapter_trial) if state.adapter_trial else None,
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
        new = _adapters_for_models(new)
        failpoints.hit("activate.before_state")
        self.write_state(new)
        failpoints.hit("activate.after_state")
        # Only the model that just fell out of the rollback slot is deleted; blobs staged
        # ahead of activation (pre-pulled or awaiting a retry) stay until collect_garbage.
        for dropped in (old.previous, old.active):
            if dropped and dropped.sha256 not in new.pinned:
                (self.blobs_dir / dropped.sha256).unlink(missing_ok=True)
        self.collect_garbage(new, min_age_s=STALE_BLOB_S)
        self.ledger.prune(set(self.blobs()))
        return new

    def stage(self, sha256: str) -> int:
        """Verify an upload into ``blobs/`` and pin it for a later activation (one at a time:
        staging another unpins the first, which garbage collection may then take)."""
        blob = self.verify_staged(sha256, "stage")
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
        new = _adapters_for_models(new)
        self.write_state(new)
        return new

    def raise_manifest_mark(self, seq: int) -> None:
        """Record ``seq`` as the highest manifest version accepted (never lowered)."""
        old = self.read_state()
        if seq > old.manifest_seq:
            self.write_state(replace(old, manifest_seq=seq))

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


def _adapters_for_models(state: StoreState) -> StoreState:
    """Adapters are kept for the active and previous models only; the default and a trial
    belong to the active model."""
    bases = {r.sha256 for r in (state.active, state.previous) if r}
    active = state.active.sha256 if state.active else ""
    kept = tuple(a for a in state.adapters if a.base_sha256 in bases)
    default = next((a.name for a in kept
                    if a.name == state.adapter_default and a.base_sha256 == active), "")
    trial = state.adapter_trial
    return replace(state, adapters=kept, adapter_default=default,
                   adapter_trial=trial if trial and trial.base_sha256 == active else None)


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
