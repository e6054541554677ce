"""Attacks on load orders, against real lab agents (mutual TLS, pinned signing key): each is
refused with the check that failed named, and the device runs what it ran before."""

from __future__ import annotations

import json
import time
from dataclasses import replace
from pathlib import Path

import pytest
import sqlalchemy as sa

from agent.contract import MANIFEST_FORMAT, ErrorKind
from controller.adapters.audit_log import read_audit
from controller.adapters.pki import FleetPki
from controller.adapters.trust_repo import SqlTrust
from controller.errors import AgentRefused
from controller.services.context import Fleet
from controller.services.manifests import manifest_signer
from tests.conftest import Cli
from tests.security.conftest import device_state, fields, gguf, request, stage


def _refused(fleet: Fleet, device: str, load: object) -> AgentRefused:
    with fleet.client(fleet.inventory.get_device(device)) as client, \
            pytest.raises(AgentRefused) as info:
        client.load_model(load)  # type: ignore[arg-type]
    return info.value


def _load(fleet: Fleet, device: str, load: object) -> None:
    with fleet.client(fleet.inventory.get_device(device)) as client:
        client.load_model(load)  # type: ignore[arg-type]


def test_a_manifest_captured_for_one_device_is_refused_by_another(
        pair: Fleet, model_cache: Path) -> None:
    q2 = gguf(model_cache, "q2_k")
    stage(pair, "lab-2", q2)
    signed = fields(q2, "q2_k")
    body, signature = manifest_signer(pair, "lab-2")(signed)
    _load(pair, "lab-2", request(signed, body, signature))  # genuine, for lab-2
    stage(pair, "lab-1", q2)
    before = device_state(pair, "lab-1")
    refused = _refused(pair, "lab-1", request(signed, body, signature))  # replayed on lab-1
    assert refused.code == "PERMISSION_DENIED" and refused.kind is ErrorKind.MANIFEST_REJECTED
    assert "refused (device)" in refused.message and "'lab-2'" in refused.message
    assert device_state(pair, "lab-1") == before


def _dated(fleet: Fleet, device: str, signed: dict[str, object], issued: float,
           expires: float) -> tuple[bytes, bytes]:
    """A manifest signed by the fleet's own key, with a validity of the attacker's choosing
    (what an old captured manifest carries)."""
    return fleet.pki.sign_manifest({
        **signed, "v": MANIFEST_FORMAT, "device": device, "rollout": "",
        "seq": SqlTrust(fleet.inventory.engine).next_seq(device),
        "issued_at": int(issued), "expires_at": int(expires)})


def test_a_manifest_dated_1970_or_expired_is_refused(pair: Fleet, model_cache: Path) -> None:
    q2 = gguf(model_cache, "q2_k")
    stage(pair, "lab-1", q2)
    signed = fields(q2, "q2_k")
    before = device_state(pair, "lab-1")
    for issued, expires, shown in ((0, 600, "1970-01-01"),
                                   (time.time() - 1200, time.time() - 600, "expired")):
        body, signature = _dated(pair, "lab-1", signed, issued, expires)
        refused = _refused(pair, "lab-1", request(signed, body, signature))
        assert refused.kind is ErrorKind.MANIFEST_REJECTED
        assert "refused (expiry)" in refused.message and shown in refused.message
        assert "this device's clock says" in refused.message
    assert device_state(pair, "lab-1") == before


def test_a_used_manifest_cannot_load_again_with_another_n_ctx_or_at_all(
        pair: Fleet, model_cache: Path) -> None:
    q2, q4 = gguf(model_cache, "q2_k"), gguf(model_cache, "q4_k_m")
    stage(pair, "lab-1", q2)
    signed = fields(q2, "q2_k")
    body, signature = manifest_signer(pair, "lab-1")(signed)
    _load(pair, "lab-1", request(signed, body, signature))
    stage(pair, "lab-1", q4)  # the device moves on to another model
    newer = fields(q4, "q4_k_m")
    _load(pair, "lab-1", request(newer, *manifest_signer(pair, "lab-1")(newer)))
    before = device_state(pair, "lab-1")
    # the captured q2 manifest, with a bigger context in the request
    refused = _refused(pair, "lab-1", request(signed, body, signature, n_ctx=2048))
    assert "refused (n_ctx)" in refused.message and "2048" in refused.message
    # and as it was: a replay, below the device's high-water mark (a downgrade to q2_k)
    refused = _refused(pair, "lab-1", request(signed, body, signature))
    assert refused.kind is ErrorKind.MANIFEST_STALE and "refused (version)" in refused.message
    assert "resync-version lab-1" in refused.hint
    assert device_state(pair, "lab-1") == before


def test_the_memory_guard_uses_the_signed_estimate(pair: Fleet, model_cache: Path) -> None:
    f16 = gguf(model_cache, "f16")
    stage(pair, "lab-1", f16)
    before = device_state(pair, "lab-1")
    honest = fields(f16, "f16", memory_bytes=64 * 2**30)  # the controller's estimate
    body, signature = manifest_signer(pair, "lab-1")(honest)
    refused = _refused(pair, "lab-1", request(honest, body, signature, memory_bytes=1))
    assert "refused (memory_bytes)" in refused.message and "1 differs" in refused.message
    unsigned = fields(f16, "f16")  # no estimate signed at all
    body, signature = manifest_signer(pair, "lab-1")(unsigned)
    refused = _refused(pair, "lab-1", request(unsigned, body, signature, memory_bytes=1))
    assert "refused (memory_bytes)" in refused.message
    assert device_state(pair, "lab-1") == before
    # the genuine order is admitted (its version becomes the mark) and the guard, fed the
    # signed estimate, refuses the load
    body, signature = manifest_signer(pair, "lab-1")(honest)
    refused = _refused(pair, "lab-1", request(honest, body, signature))
    assert refused.code == "RESOURCE_EXHAUSTED" and "65536 MiB" in refused.message
    assert device_state(pair, "lab-1") == replace(before, manifest_seq=json.loads(body)["seq"])


def test_aliases_replace_and_pinned_are_acted_on_only_as_signed(pair: Fleet,
                                                                model_cache: Path) -> None:
    q2, q4 = gguf(model_cache, "q2_k"), gguf(model_cache, "q4_k_m")
    stage(pair, "lab-1", q2)
    first = fields(q2, "q2_k", aliases=["assistant"], pinned=True)
    _load(pair, "lab-1", request(first, *manifest_signer(pair, "lab-1")(first)))
    stage(pair, "lab-1", q4)
    before = device_state(pair, "lab-1")
    # a genuine order for a second model beside it, sent with replace (stop the other
    # model), another alias, or unpinned: each refused, naming the field
    beside = fields(q4, "q4_k_m", name="tiny-chat")
    for change, check in (({"replace": True}, "replace"), ({"aliases": ["assistant"]},
                                                             "aliases"),
                          ({"pinned": True}, "pinned")):
        body, signature = manifest_signer(pair, "lab-1")(beside)
        refused = _refused(pair, "lab-1", request(beside, body, signature, **change))
        assert f"refused ({check})" in refused.message
    after = device_state(pair, "lab-1")
    assert (after.active, after.models) == (before.active, before.models)
    with pair.client(pair.inventory.get_device("lab-1")) as client:
        slots = {s.name: s for s in client.get_store().slots}
    assert list(slots) == ["tiny-llama"] and slots["tiny-llama"].pinned
    assert list(slots["tiny-llama"].aliases) == ["assistant"]


def test_a_manifest_signed_by_another_key_is_refused(pair: Fleet, model_cache: Path,
                                                     tmp_path: Path) -> None:
    q2 = gguf(model_cache, "q2_k")
    stage(pair, "lab-1", q2)
    signed = fields(q2, "q2_k")
    other = FleetPki(tmp_path / "other").ensure()
    genuine, _ = manifest_signer(pair, "lab-1")(signed)
    body, signature = other.sign_manifest(json.loads(genuine))
    refused = _refused(pair, "lab-1", request(signed, body, signature))
    assert "refused (signature)" in refused.message


def test_versions_at_or_below_the_mark_are_refused_across_a_restart(
        pair: Fleet, cli: Cli, model_cache: Path) -> None:
    q2, q4 = gguf(model_cache, "q2_k"), gguf(model_cache, "q4_k_m")
    sign = manifest_signer(pair, "lab-1")
    older = fields(q2, "q2_k")
    old_body, old_signature = sign(older)  # issued, never delivered
    newer = fields(q4, "q4_k_m")
    new_body, new_signature = sign(newer)
    stage(pair, "lab-1", q2)
    stage(pair, "lab-1", q4)
    _load(pair, "lab-1", request(newer, new_body, new_signature))
    mark = json.loads(new_body)["seq"]
    assert cli("lab", "restart", "lab-1").code == 0
    after = device_state(pair, "lab-1")
    assert after.manifest_seq == mark  # state.json kept it
    for signed, body, signature in ((older, old_body, old_signature),
                                    (newer, new_body, new_signature)):
        refused = _refused(pair, "lab-1", request(signed, body, signature))
        assert refused.kind is ErrorKind.MANIFEST_STALE
        assert f"not above this device's high-water mark {mark}" in refused.message
    assert device_state(pair, "lab-1") == after


def test_a_restored_controller_database_needs_an_explicit_resync(
        pair: Fleet, cli: Cli, home: Path) -> None:
    assert cli("deploy", "tiny-llama", "--device", "lab-1").code == 0
    assert cli("deploy", "tiny-llama", "--device", "lab-1", "--prefer", "speed").code == 0
    mark = device_state(pair, "lab-1").manifest_seq
    assert mark >= 2
    with pair.inventory.engine.begin() as c:  # the database as a week-old backup had it
        c.execute(sa.text("UPDATE manifest_counter SET seq = 0 WHERE device = 'lab-1'"))
    result = cli("deploy", "tiny-llama", "--device", "lab-1")  # back to the first variant
    assert result.code == 1
    assert "refused (version)" in result.out + result.err
    assert "fleet device resync-version lab-1" in result.out + result.err
    before = device_state(pair, "lab-1")
    assert before.manifest_seq == mark  # the refused order moved nothing on the device
    resynced = cli("device", "resync-version", "lab-1")
    assert resynced.code == 0, resynced.err
    assert f"moved from 1 to {mark}" in resynced.out
    entry = read_audit()[-1]
    assert entry["action"] == "resync-version" and entry["device"] == "lab-1"
    assert (entry["counter_before"], entry["counter_after"], entry["device_mark"]) == (
        1, mark, mark)
    assert cli("deploy", "tiny-llama", "--device", "lab-1").code == 0
    assert device_state(pair, "lab-1").manifest_seq == mark + 1
