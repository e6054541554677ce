"""The agent's manifest checks, one case per check (a real store on disk, real keys); the
wire versions of these attacks are in tests/security/."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519

from agent.errors import ManifestRejected, ManifestStale
from agent.manifest_check import LoadFields, ManifestGate
from agent.store import ModelStore

SHA = "ab" * 32
NOW = 1_800_000_000.0


def _fields(**changes: Any) -> LoadFields:
    base = LoadFields(sha256=SHA, size_bytes=1000, name="tiny-llama", variant="q4_k_m",
                      format="gguf", n_ctx=512, memory_bytes=5000, trial=True,
                      trial_seconds=600)
    return LoadFields(**{**asdict(base), **changes})


@pytest.fixture
def key() -> ed25519.Ed25519PrivateKey:
    return ed25519.Ed25519PrivateKey.generate()


@pytest.fixture
def gate(tmp_path: Path, key: ed25519.Ed25519PrivateKey) -> ManifestGate:
    return ManifestGate(lambda: [key.public_key()], "kiosk-1", ModelStore(tmp_path / "store"),
                        clock=lambda: NOW)


Signer = Callable[..., tuple[bytes, bytes]]


@pytest.fixture
def sign(key: ed25519.Ed25519PrivateKey) -> Signer:
    def make(seq: int = 1, **changes: Any) -> tuple[bytes, bytes]:
        manifest = {**asdict(_fields()), "runtime": {}, "v": 2, "device": "kiosk-1",
                    "rollout": "r1", "seq": seq, "issued_at": NOW - 5, "expires_at": NOW + 600,
                    **changes}
        body = json.dumps(manifest, sort_keys=True, separators=(",", ":")).encode()
        return body, key.sign(body)

    return make


def test_a_genuine_manifest_grants_its_signed_values_and_raises_the_mark(
        gate: ManifestGate, sign: Signer, tmp_path: Path) -> None:
    grant = gate.admit(_fields(), *sign(seq=7))
    assert (grant.seq, grant.rollout, grant.memory_bytes, grant.trial,
            grant.trial_seconds) == (7, "r1", 5000, True, 600)
    assert grant.record.n_ctx == 512 and grant.record.sha256 == SHA
    assert ModelStore(tmp_path / "store").read_state().manifest_seq == 7  # on disk


def test_an_adapter_grant_carries_its_signed_base(gate: ManifestGate, sign: Signer) -> None:
    fields = _fields(format="lora", base_sha256="cd" * 32, n_ctx=0)
    grant = gate.admit(fields, *sign(format="lora", base_sha256="cd" * 32, n_ctx=0))
    assert grant.base_sha256 == "cd" * 32 and grant.record.format == "lora"


def test_a_model_manifest_without_base_reads_as_before(gate: ManifestGate,
                                                       key: ed25519.Ed25519PrivateKey) -> None:
    manifest = {**asdict(_fields()), "runtime": {}, "v": 2, "device": "kiosk-1",
                "rollout": "r1", "seq": 3, "issued_at": NOW - 5, "expires_at": NOW + 600}
    del manifest["base_sha256"]  # signed by a controller from before adapters
    body = json.dumps(manifest, sort_keys=True, separators=(",", ":")).encode()
    assert gate.admit(_fields(), body, key.sign(body)).base_sha256 == ""


def test_signed_aliases_replace_and_pinned_are_granted(gate: ManifestGate,
                                                      sign: Signer) -> None:
    fields = _fields(aliases=("default", "assistant"), replace=True, pinned=True)
    grant = gate.admit(fields, *sign(aliases=["assistant", "default"], replace=True,
                                     pinned=True))
    assert (grant.aliases, grant.replace, grant.pinned) == (("assistant", "default"), True,
                                                            True)


def test_a_manifest_without_slot_keys_reads_as_none(gate: ManifestGate,
                                                    key: ed25519.Ed25519PrivateKey) -> None:
    manifest = {**asdict(_fields()), "runtime": {}, "v": 2, "device": "kiosk-1",
                "rollout": "r1", "seq": 3, "issued_at": NOW - 5, "expires_at": NOW + 600}
    for field in ("aliases", "replace", "pinned"):  # a controller from before slots
        del manifest[field]
    body = json.dumps(manifest, sort_keys=True, separators=(",", ":")).encode()
    grant = gate.admit(_fields(), body, key.sign(body))
    assert (grant.aliases, grant.replace, grant.pinned) == ((), False, False)
    with pytest.raises(ManifestRejected) as info:  # a request may not add them unsigned
        gate.admit(_fields(pinned=True), body, key.sign(body))
    assert info.value.check == "pinned"


@pytest.mark.parametrize(("changes", "request_changes", "check"), [
    ({}, {}, None),
    ({"device": "kiosk-2"}, {}, "device"),
    ({"issued_at": 0, "expires_at": 600}, {}, "expiry"),
    ({"expires_at": NOW - 1}, {}, "expiry"),
    ({"expires_at": "never"}, {}, "expiry"),
    ({"v": 1}, {}, "format"),
    ({}, {"n_ctx": 4096}, "n_ctx"),
    ({}, {"memory_bytes": 1}, "memory_bytes"),
    ({}, {"trial": False}, "trial"),
    ({}, {"trial_seconds": 0}, "trial_seconds"),
    ({}, {"variant": "f16"}, "variant"),
    # a LoRA adapter's base is signed: neither side may add, drop or change it
    ({"base_sha256": "cd" * 32}, {}, "base_sha256"),
    ({}, {"base_sha256": "cd" * 32}, "base_sha256"),
    ({"n_ctx": 512.0}, {}, "n_ctx"),  # a float is not the int the request carries
    ({"runtime": {"threads": 64}}, {}, "runtime"),
    # several models per device: aliases (a sorted list), replace and pinned are signed too
    ({"aliases": ["assistant"]}, {}, "aliases"),
    ({}, {"aliases": ("assistant",)}, "aliases"),
    ({"aliases": ["b", "a"]}, {"aliases": ("a", "b")}, "aliases"),
    ({"aliases": "assistant"}, {"aliases": ("assistant",)}, "aliases"),
    ({"replace": True}, {}, "replace"),
    ({}, {"replace": True}, "replace"),
    ({}, {"pinned": True}, "pinned"),
    ({"pinned": 1}, {"pinned": True}, "pinned"),
    ({"seq": 0}, {}, "version"),
    ({"seq": True}, {}, "version"),
])
def test_each_check_names_itself(gate: ManifestGate, sign: Signer,
                                 changes: dict[str, Any], request_changes: dict[str, Any],
                                 check: str | None) -> None:
    body, signature = sign(**{"seq": 3, **changes})
    if check is None:
        assert gate.admit(_fields(**request_changes), body, signature).seq == 3
        return
    with pytest.raises(ManifestRejected) as info:
        gate.admit(_fields(**request_changes), body, signature)
    assert info.value.check == check and f"refused ({check})" in str(info.value)


def test_unsigned_tampered_and_foreign_keys_are_refused(gate: ManifestGate, sign: Signer
                                                        ) -> None:
    with pytest.raises(ManifestRejected) as info:
        gate.admit(_fields(), b"", b"")
    assert info.value.check == "signed"
    body, signature = sign()
    with pytest.raises(ManifestRejected) as info:
        gate.admit(_fields(), body.replace(b"q4_k_m", b"q2_k__"), signature)
    assert info.value.check == "signature"
    other = ed25519.Ed25519PrivateKey.generate()
    with pytest.raises(ManifestRejected) as info:
        gate.admit(_fields(), body, other.sign(body))
    assert info.value.check == "signature"


def test_versions_at_or_below_the_mark_are_stale_even_in_a_new_gate(
        gate: ManifestGate, sign: Signer, key: ed25519.Ed25519PrivateKey, tmp_path: Path
        ) -> None:
    gate.admit(_fields(), *sign(seq=5))
    restarted = ManifestGate(lambda: [key.public_key()], "kiosk-1",
                             ModelStore(tmp_path / "store"), clock=lambda: NOW)
    for seq in (5, 4, 1):
        with pytest.raises(ManifestStale) as info:
            restarted.admit(_fields(), *sign(seq=seq))
        assert "high-water mark 5" in str(info.value)
    assert restarted.admit(_fields(), *sign(seq=6)).seq == 6


def test_a_refused_manifest_leaves_the_mark_alone(gate: ManifestGate, sign: Signer,
                                                  tmp_path: Path) -> None:
    gate.admit(_fields(), *sign(seq=2))
    with pytest.raises(ManifestRejected):
        gate.admit(_fields(n_ctx=9), *sign(seq=9))
    assert ModelStore(tmp_path / "store").read_state().manifest_seq == 2


def test_a_signed_peer_grant_is_no_load_order(gate: ManifestGate, sign: Signer) -> None:
    """A grant the controller signed for a peer transfer, with every field of a load order
    added, still does not load."""
    body, signature = sign(kind="peer-fetch")
    with pytest.raises(ManifestRejected, match="not a load order"):
        gate.admit(_fields(), body, signature)


def test_a_signed_load_order_is_no_peer_grant(key: ed25519.Ed25519PrivateKey) -> None:
    from cryptography.hazmat.primitives import serialization

    from agent.peer_contract import GRANT_KIND, chunks_sha256
    from agent.peer_identity import verify_grant

    digests = [b"\x00" * 32]
    grant = {"kind": GRANT_KIND, "sha256": SHA, "size_bytes": 4096, "chunk_bytes": 4096,
             "chunks_sha256": chunks_sha256(digests), "receiver": "kiosk-1",
             "sources": ["kiosk-2"], "rollout": "r1", "issued_at": NOW, "expires_at": NOW + 60}
    pub = key.public_key().public_bytes(serialization.Encoding.PEM,
                                        serialization.PublicFormat.SubjectPublicKeyInfo)
    for extra in ({"v": 2}, {"device": "kiosk-1"}):
        body = json.dumps({**grant, **extra}, sort_keys=True).encode()
        with pytest.raises(ManifestRejected, match="load order is not a peer grant"):
            verify_grant(pub, body, key.sign(body), digests, now=NOW)
    body = json.dumps(grant, sort_keys=True).encode()
    assert verify_grant(pub, body, key.sign(body), digests, now=NOW).receiver == "kiosk-1"
