"""Never trust a byte twice: fingerprints, re-hashing, quarantine, scrub and real disk use."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from agent.emulation import DeviceView
from agent.errors import BlobCorrupt
from agent.integrity import Fingerprint, allocated_bytes
from agent.preflight import check_fit
from agent.scrub import Scrubber
from agent.store import ModelRecord, ModelStore

MIB = 1024 * 1024


def _blob(store: ModelStore, data: bytes) -> str:
    sha = hashlib.sha256(data).hexdigest()
    (store.incoming_dir / sha).write_bytes(data)
    store.verify_staged(sha)
    return sha


def _record(sha: str, variant: str) -> ModelRecord:
    return ModelRecord(sha, "m", variant, "gguf", 64, 3)


def _flip(path: Path, offset: int = 1) -> None:
    with path.open("r+b") as fh:
        fh.seek(offset)
        byte = fh.read(1)
        fh.seek(offset)
        fh.write(bytes([byte[0] ^ 0xFF]))


def _view(disk_limit: int = 0) -> DeviceView:
    return DeviceView("t", True, "t", "x86_64", "cpu", 1, (), 1 << 30, 0, "", "", 1.0,
                      disk_limit)


def test_a_blob_changed_at_rest_is_quarantined_and_the_previous_model_takes_over(
        tmp_path: Path) -> None:
    store = ModelStore(tmp_path)
    old, new = _blob(store, b"old model"), _blob(store, b"new model")
    store.activate(_record(old, "a"))
    store.activate(_record(new, "b"))
    _flip(store.blobs_dir / new)
    with pytest.raises(BlobCorrupt, match="quarantined"):
        store.verify_staged(new, "load")
    state = store.read_state()
    assert state.active == _record(old, "a") and state.previous is None
    assert state.reverted == new and "changed on the device's disk" in state.reverted_reason
    assert new not in store.blobs() and not store.holds(new)
    [record] = store.ledger.quarantined()
    assert record.sha256 == new and record.found_by == "load" and record.bytes_kept
    assert record.actual_sha256 == hashlib.sha256(
        (store.ledger.quarantine_dir / new).read_bytes()).hexdigest()


def test_an_intact_blob_is_trusted_by_its_fingerprint_and_rehashed_when_it_changes(
        tmp_path: Path) -> None:
    store = ModelStore(tmp_path)
    sha = _blob(store, b"model bytes")
    path = store.blobs_dir / sha
    assert store.ledger.trusted(sha, path)
    os.utime(path, None)  # touched, not changed: hashed again, then trusted again
    assert not store.ledger.trusted(sha, path)
    assert store.holds(sha) and store.ledger.trusted(sha, path)


def test_a_fresh_upload_replaces_a_corrupt_stored_copy(tmp_path: Path) -> None:
    store = ModelStore(tmp_path)
    data = b"the model"
    sha = _blob(store, data)
    _flip(store.blobs_dir / sha)
    (store.incoming_dir / sha).write_bytes(data)  # the controller sent it again
    path = store.verify_staged(sha)
    assert path.read_bytes() == data and store.ledger.trusted(sha, path)
    assert [r.sha256 for r in store.ledger.quarantined()] == [sha]


def test_the_scrub_finds_rot_the_fingerprint_cannot_see(tmp_path: Path) -> None:
    store = ModelStore(tmp_path)
    sha = _blob(store, b"x" * 4096)
    store.activate(_record(sha, "a"))
    path = store.blobs_dir / sha
    _flip(path, 100)
    store.ledger.record(sha, Fingerprint.of(path))  # as if the bits rotted under the FS
    assert store.holds(sha)  # the cheap check is fooled...
    found: list[str] = []
    scrubber = Scrubber(store, found.append, rate_mb_s=100, interval_s=1, delay_s=0)
    assert scrubber.scrub_pass() == [sha] == found  # ...the scrub is not
    assert store.read_state().active is None and not store.holds(sha)
    assert scrubber.status().blobs_checked == 1


def test_disk_use_counts_allocated_blocks_not_sizes(tmp_path: Path) -> None:
    store = ModelStore(tmp_path)
    sparse = store.incoming_dir / ("a" * 64 + ".part")
    with sparse.open("wb") as fh:
        fh.truncate(64 * MIB)  # preallocated by a multi-channel upload, nothing written
    assert allocated_bytes(sparse) < MIB
    assert store.used_bytes() < MIB


def test_preflight_counts_what_a_sparse_upload_really_holds(tmp_path: Path) -> None:
    store = ModelStore(tmp_path)
    sha = "b" * 64
    part = store.incoming_dir / f"{sha}.part"
    with part.open("wb") as fh:
        fh.truncate(100 * MIB)
        fh.seek(0)
        fh.write(os.urandom(10 * MIB))
    (store.incoming_dir / f"{sha}.ranges").write_text("{}")
    fit = check_fit(store, _view(disk_limit=120 * MIB), 1 << 30, sha, 100 * MIB, 1)
    # 90 MiB still to come + 64 MiB margin do not fit 120 - 10 MiB
    assert not fit["fits"] and "needs 154.0 MiB" in fit["reason"], fit["reason"]
    assert fit["staged_sha256"] == ""  # a multi-channel upload resumes by its ranges


def test_reclaim_frees_unpinned_and_quarantined_bytes_never_pinned_ones(
        tmp_path: Path) -> None:
    store = ModelStore(tmp_path)
    active, previous, spare, rotten = (_blob(store, os.urandom(MIB)) for _ in range(4))
    store.activate(_record(previous, "p"))
    store.activate(_record(active, "a"))
    store.stage(spare)
    store.stage(rotten)  # unpins spare
    _flip(store.blobs_dir / rotten)
    assert not store.holds(rotten)
    freed = store.reclaim(10 * MIB, keep="c" * 64)
    assert freed >= 2 * MIB
    assert set(store.blobs()) == {active, previous}
    [record] = store.ledger.quarantined()
    assert not record.bytes_kept and "freed to make room" in record.reason
