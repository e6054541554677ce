"""The content-addressed store: verify before use, no traversal, atomic state."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest

from agent.errors import ChecksumMismatch, InvalidRequest, NotFound
from agent.store import ModelRecord, ModelStore


def _stage(store: ModelStore, data: bytes) -> str:
    digest = hashlib.sha256(data).hexdigest()
    (store.incoming_dir / digest).write_bytes(data)
    return digest


def _record(sha: str, variant: str = "q4") -> ModelRecord:
    return ModelRecord(sha256=sha, name="m", variant=variant, format="gguf", n_ctx=64,
                       size_bytes=3)


def test_verified_blob_moves_into_the_store(tmp_path: Path) -> None:
    store = ModelStore(tmp_path)
    sha = _stage(store, b"abc")
    path = store.verify_staged(sha)
    assert path == tmp_path / "blobs" / sha and path.read_bytes() == b"abc"
    assert not (store.incoming_dir / sha).exists()
    assert store.blobs() == [sha]


def test_mismatch_is_refused_and_deleted(tmp_path: Path) -> None:
    store = ModelStore(tmp_path)
    sha = hashlib.sha256(b"the real bytes").hexdigest()
    (store.incoming_dir / sha).write_bytes(b"tampered bytes")
    with pytest.raises(ChecksumMismatch):
        store.verify_staged(sha)
    assert not (store.incoming_dir / sha).exists()
    assert store.blobs() == []


@pytest.mark.parametrize("name", ["../../etc/passwd", "a" * 63, "A" * 64, "", "x/" + "a" * 62])
def test_names_from_the_network_never_become_paths(tmp_path: Path, name: str) -> None:
    store = ModelStore(tmp_path)
    with pytest.raises(InvalidRequest):
        store.verify_staged(name)


def test_missing_blob_is_not_found(tmp_path: Path) -> None:
    with pytest.raises(NotFound):
        ModelStore(tmp_path).verify_staged("a" * 64)


def test_activation_keeps_previous_and_drops_the_one_before(tmp_path: Path) -> None:
    store = ModelStore(tmp_path)
    shas = [_stage(store, bytes([i]) * 3) for i in range(4)]
    for sha in shas:
        store.verify_staged(sha)
    store.activate(_record(shas[0], "a"))
    store.activate(_record(shas[1], "b"))
    assert shas[3] in store.blobs()  # staged ahead of activation: kept
    state = store.activate(_record(shas[2], "c"))
    assert state.active and state.active.variant == "c"
    assert state.previous and state.previous.variant == "b"
    assert set(store.blobs()) == {shas[1], shas[2], shas[3]}
    assert store.collect_garbage(state) == [shas[3]]
    on_disk = json.loads((tmp_path / "state.json").read_text())
    assert on_disk["active"]["sha256"] == shas[2]
    assert not list(tmp_path.glob("*.tmp"))


def test_garbage_collection_keeps_fresh_staged_blobs(tmp_path: Path) -> None:
    import os
    import time

    store = ModelStore(tmp_path)
    shas = [_stage(store, bytes([i]) * 3) for i in range(3)]
    for sha in shas:
        store.verify_staged(sha)
    old = time.time() - 2 * 3600
    os.utime(store.blobs_dir / shas[1], (old, old))  # verified two hours ago, never used
    store.activate(_record(shas[0]))
    assert set(store.blobs()) == {shas[0], shas[2]}  # the stale one went, the fresh stayed


def test_a_staged_model_is_pinned_until_it_is_activated_or_replaced(tmp_path: Path) -> None:
    store = ModelStore(tmp_path)
    a, b, c = (_stage(store, data) for data in (b"aaa", b"bbb", b"ccc"))
    store.stage(b)
    os.utime(store.blobs_dir / b, (0, 0))  # verified long ago: old enough to collect
    store.activate(_record(a))
    store.collect_garbage(store.read_state(), min_age_s=60)
    assert b in store.blobs() and store.read_state().staged == b
    store.stage(c)  # one pin at a time: b may go now
    assert store.collect_garbage(store.read_state(), min_age_s=60) == [b]
    store.activate(_record(c))
    assert store.read_state().staged == ""
    assert store.read_state().previous == _record(a)


def test_the_state_is_parsed_again_only_when_the_file_changed(tmp_path: Path) -> None:
    store = ModelStore(tmp_path)
    assert store.read_state().current == ""  # no file yet
    sha = _stage(store, b"abc")
    store.verify_staged(sha)
    store.activate(_record(sha, "a"))
    first = store.read_state()
    assert store.read_state() is first  # unchanged: the parsed state is reused
    store.activate(_record(sha, "b"))
    assert store.read_state().slots[0].active.variant == "b"  # type: ignore[union-attr]
    # another writer (a new file renamed in, as write_state does): seen at the next read
    data = json.loads(store.state_path.read_text())
    data["slots"][0]["active"]["variant"] = "c"
    (tmp_path / "other.tmp").write_text(json.dumps(data))
    os.replace(tmp_path / "other.tmp", store.state_path)
    assert store.read_state().slots[0].active.variant == "c"  # type: ignore[union-attr]
    store.state_path.unlink()
    assert store.read_state().slots == ()
