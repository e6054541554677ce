"""Content-addressed model store: staged -> verified -> active, previous kept for rollback.

Layout under the data dir::

    store/incoming/<sha256>.part   an upload in progress (the controller writes here over SFTP)
    store/incoming/<sha256>        a finished upload, not yet verified
    store/blobs/<sha256>           verified bytes; the name is the content hash
    store/state.json               desired state (agent.store_state): one slot per model
                                   name with its active and previous model records, whether
                                   the active one is on trial, its aliases, and the LoRA
                                   adapters held for those models (agent.adapters); the
                                   highest manifest version accepted (agent.manifest_check)
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
from dataclasses import replace
from pathlib import Path

from agent import failpoints, store_state
from agent.contract import RevertCause
from agent.errors import BlobCorrupt, ChecksumMismatch, NotFound
from agent.integrity import BlobLedger, Fingerprint, QuarantineRecord, allocated_bytes, hash_file
from agent.store_state import (
    AdapterRecord,
    ModelRecord,
    Slot,
    StoreState,
    check_sha256,
)

__all__ = ["AdapterRecord", "ModelRecord", "ModelStore", "Slot", "StoreState", "check_sha256"]

log = logging.getLogger("edgefleet.agent")

_SHA256 = re.compile(r"[0-9a-f]{64}")
STALE_BLOB_S = 3600.0  # verified but never activated for an hour: collected on activation
STALE_UPLOAD_S = 7 * 24 * 3600.0  # an interrupted upload is kept a week for resumption
# an upload of another blob untouched this long may be freed to make room (a concurrent
# deploy's upload in progress is younger)
IDLE_UPLOAD_S = 600.0
CHUNK = 1 << 20


class ModelStore:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.incoming_dir = root / "incoming"
        self.blobs_dir = root / "blobs"
        self.state_path = root / "state.json"
        self.incoming_dir.mkdir(parents=True, exist_ok=True)
        self.blobs_dir.mkdir(parents=True, exist_ok=True)
        self.ledger = BlobLedger(root)
        # the last state read, by the file's (inode, size, mtime, ctime); StoreState is frozen
        self._state: tuple[tuple[int, int, int, int], StoreState] | None = None

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
        new = store_state.quarantined(old, sha256, reason)
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
        """The desired state. Parsed again only when the file changed (its inode, size and
        times: ``write_state`` renames a new file in): a request reads it two or three times
        and the worker watch every second. The key is taken before the read, so a state
        cached is never older than its key."""
        try:
            st = os.stat(self.state_path)
        except FileNotFoundError:
            return StoreState()
        key = (st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
        cached = self._state
        if cached is not None and cached[0] == key:
            return cached[1]
        try:
            data = json.loads(self.state_path.read_text())
        except FileNotFoundError:
            return StoreState()
        state = store_state.from_json(data)
        self._state = (key, state)
        return state

    def write_state(self, state: StoreState) -> None:
        tmp = self.state_path.with_suffix(".tmp")
        with tmp.open("w") as fh:
            json.dump(store_state.to_json(state), fh, indent=2)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, self.state_path)
        self._state = None
        _fsync_dir(self.root)

    def slot_of(self, sha256: str) -> Slot:
        """The slot whose active model is ``sha256`` (an empty one when none is)."""
        return self.read_state().slot_of(sha256) or Slot("")

    def write_slot(self, slot: Slot) -> None:
        """Replace one slot in the state (the adapters' changes)."""
        state = self.read_state()
        if state.slot(slot.name) is not None:
            self.write_state(state.with_slot(slot))

    def activate(self, record: ModelRecord, trial: bool = False, trial_until: float = 0.0,
                 aliases: tuple[str, ...] | None = None, pinned: bool = False,
                 memory_bytes: int = 0, replace_others: bool = False) -> StoreState:
        """Make ``record`` its slot's active model; the slot's old active one becomes its
        previous (kept for rollback); see ``store_state.activate``.

        With ``trial`` the record stays on trial until ``commit`` (given up at ``trial_until``
        if set).
        """
        old = self.read_state()
        new = store_state.activate(old, record, trial, trial_until, aliases, pinned,
                                   memory_bytes, replace_others)
        failpoints.hit("activate.before_state")
        self.write_state(new)
        failpoints.hit("activate.after_state")
        # Only models that just fell out of a rollback slot (or a dropped slot) are deleted;
        # blobs staged ahead of activation stay until collect_garbage.
        for dropped in sorted(old.pinned - new.pinned - {old.staged}):
            (self.blobs_dir / dropped).unlink(missing_ok=True)
        self.collect_garbage(new, min_age_s=STALE_BLOB_S)
        self.ledger.prune(set(self.blobs()))
        return new

    def stage(self, sha256: str) -> int:
        """Verify an upload into ``blobs/`` and pin it for a later activation (one at a time:
        staging another unpins the first, which garbage collection may then take)."""
        blob = self.verify_staged(sha256, "stage")
        old = self.read_state()
        if old.staged != sha256 and old.slot_of(sha256) is None:
            self.write_state(replace(old, staged=sha256))
        return blob.stat().st_size

    def commit(self, sha256: str) -> None:
        """End the trial of the active model ``sha256`` (in its slot)."""
        old = self.read_state()
        slot = old.slot_of(sha256)
        if slot is None:
            raise NotFound(f"model {sha256[:12]} is not an active model")
        if slot.trial:
            self.write_state(store_state.commit(old, slot.name))

    def give_up_trial(self, name: str, reason: str, cause: RevertCause) -> StoreState:
        """Record that the model on trial in slot ``name`` was given up; the slot's previous
        model becomes active (or none). Returns the new state."""
        new = store_state.give_up(self.read_state(), name, reason, cause)
        self.write_state(new)
        return new

    def raise_manifest_mark(self, seq: int) -> None:
        """Record ``seq`` as the highest manifest version accepted (never lowered)."""
        old = self.read_state()
        if seq > old.manifest_seq:
            self.write_state(replace(old, manifest_seq=seq))

    def deactivate(self, name: str = "") -> None:
        """Stop serving slot ``name`` (every slot when empty)."""
        self.write_state(store_state.deactivate(self.read_state(), name))

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


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
