"""Slots in the store's state: one per model name, read from older state.json files too."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from agent.contract import RevertCause
from agent.store import ModelRecord, ModelStore
from agent.store_state import StoreState, activate, commit, deactivate, give_up, quarantined


def _stage(store: ModelStore, data: bytes) -> str:
    digest = hashlib.sha256(data).hexdigest()
    (store.incoming_dir / digest).write_bytes(data)
    store.verify_staged(digest)
    return digest


def _rec(sha: str, name: str, fmt: str = "gguf") -> ModelRecord:
    return ModelRecord(sha256=sha, name=name, variant="q4", format=fmt, n_ctx=64, size_bytes=3)


def _sha(tag: str) -> str:
    return hashlib.sha256(tag.encode()).hexdigest()


def test_a_state_json_written_before_slots_reads_as_one_slot(tmp_path: Path) -> None:
    store = ModelStore(tmp_path)
    old, new = _sha("old"), _sha("new")
    legacy = {"active": {"sha256": new, "name": "phi3-mini", "variant": "q4_k_m",
                         "format": "gguf", "n_ctx": 2048, "size_bytes": 10},
              "previous": {"sha256": old, "name": "phi3-mini", "variant": "q8_0",
                           "format": "gguf", "n_ctx": 2048, "size_bytes": 12},
              "trial": True, "trial_until": 123.0, "reverted": "", "reverted_reason": "",
              "reverted_cause": 0, "staged": "", "manifest_seq": 7,
              "adapters": [], "adapter_default": "", "adapter_trial": None}
    store.state_path.write_text(json.dumps(legacy))
    state = store.read_state()
    assert [s.name for s in state.slots] == ["phi3-mini"] and state.current == "phi3-mini"
    slot = state.slots[0]
    assert slot.active and slot.active.sha256 == new and slot.previous
    assert slot.previous.sha256 == old and slot.trial and slot.trial_until == 123.0
    assert state.manifest_seq == 7 and state.pinned == {old, new}
    # written back, it keeps the single-model keys an older agent reads after a downgrade
    store.write_state(state)
    data = json.loads(store.state_path.read_text())
    assert data["active"]["sha256"] == new and data["trial"] and len(data["slots"]) == 1
    assert store.read_state() == state


def test_another_name_loads_beside_and_the_same_name_replaces_in_its_slot(
        tmp_path: Path) -> None:
    store = ModelStore(tmp_path)
    a1, a2, b = (_stage(store, x) for x in (b"a1", b"a2", b"b"))
    store.activate(_rec(a1, "chat"))
    store.activate(_rec(b, "classify", "onnx"), pinned=True, memory_bytes=5)
    state = store.activate(_rec(a2, "chat"))
    chat, classify = state.slot("chat"), state.slot("classify")
    assert chat and chat.active and chat.active.sha256 == a2 and chat.previous
    assert chat.previous.sha256 == a1
    assert classify and classify.active and classify.active.sha256 == b and classify.pinned
    assert classify.memory_bytes == 5
    # the single-valued view is the slot of the most recent load
    assert state.current == "chat" and state.active and state.active.sha256 == a2
    assert set(store.blobs()) == {a1, a2, b} == state.pinned


def test_an_alias_moves_and_a_given_up_trial_gives_it_back(tmp_path: Path) -> None:
    a, b = _sha("a"), _sha("b")
    state = activate(StoreState(), _rec(a, "tiny"), aliases=("assistant", "default"))
    state = activate(state, _rec(b, "small"), trial=True, aliases=("assistant",))
    assert state.named("assistant") == state.slot("small")
    assert state.named("default") == state.slot("tiny") == state.default()
    back = give_up(state, "small", "aborted", RevertCause.ABORTED)
    assert back.named("assistant") == back.slot("tiny")
    slot = back.slot("small")
    assert slot and slot.active is None and slot.reverted == b and not slot.serving
    kept = commit(state, "small")
    assert kept.named("assistant") == kept.slot("small")
    assert kept.slot("small") and not kept.slot("small").taken_aliases  # type: ignore[union-attr]


def test_replace_on_trial_holds_the_others_back_until_commit(tmp_path: Path) -> None:
    a, b, c = _sha("a"), _sha("b"), _sha("c")
    state = activate(activate(StoreState(), _rec(a, "a")), _rec(b, "b"))
    trial = activate(state, _rec(c, "c"), trial=True, replace_others=True)
    assert [s.name for s in trial.serving()] == ["c"] and trial.pinned == {a, b, c}
    back = give_up(trial, "c", "deadline", RevertCause.DEADLINE)
    assert sorted(s.name for s in back.serving()) == ["a", "b"]
    done = commit(trial, "c")
    assert [s.name for s in done.slots] == ["c"] and done.pinned == {c}
    at_once = activate(state, _rec(c, "c"), replace_others=True)
    assert [s.name for s in at_once.slots] == ["c"]


def test_corrupt_bytes_send_only_their_slot_back(tmp_path: Path) -> None:
    a1, a2, b = _sha("a1"), _sha("a2"), _sha("b")
    state = activate(activate(activate(StoreState(), _rec(a1, "a")), _rec(b, "b")),
                     _rec(a2, "a"))
    after = quarantined(state, a2, "corrupt")
    slot_a, slot_b = after.slot("a"), after.slot("b")
    assert slot_a and slot_a.active and slot_a.active.sha256 == a1 and slot_a.reverted == a2
    assert slot_b == state.slot("b")


def test_a_slot_taken_off_keeps_its_file_as_previous_and_loses_its_aliases() -> None:
    """UnloadModel (`fleet undeploy`): the other slot serves on; a later load of the model
    names its own aliases, the old ones do not come back with it."""
    a, b = _sha("a"), _sha("b")
    state = activate(activate(StoreState(), _rec(a, "tiny"), aliases=("assistant",)),
                     _rec(b, "small"))
    off = deactivate(state, "tiny")
    tiny = off.slot("tiny")
    assert tiny is not None and tiny.active is None and tiny.previous is not None
    assert tiny.previous.sha256 == a and tiny.aliases == ()
    assert off.named("assistant") is None and off.named("small") is not None
    assert activate(off, _rec(a, "tiny")).named("assistant") is None
