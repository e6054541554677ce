"""Certificates against real lab agents: a device's certificate cannot manage another device,
a removed device's and a lost controller's certificates are revoked everywhere, certificates
and the signing key rotate while the agents keep serving, and keys are private from their
first byte."""

from __future__ import annotations

import json
import os
import stat
import threading
from pathlib import Path

import pytest

from controller.adapters.agent_client import GrpcAgentClient
from controller.adapters.pki import FleetPki, cert_info
from controller.adapters.tls_probe import served_certificate
from controller.errors import AgentRefused, PkiError
from controller.lab import read_registry
from controller.services.context import Fleet
from controller.services.manifests import manifest_signer
from tests.conftest import Cli
from tests.security.conftest import fields, gguf, request, stage


def _as(fleet: Fleet, target: str, tls: tuple[bytes, bytes, bytes]) -> GrpcAgentClient:
    device = fleet.inventory.get_device(target)
    return GrpcAgentClient(target, device.host, device.agent_port, tls=tls)


def _device_credentials(home: Path, name: str, ca: bytes, which: str = "agent"
                        ) -> tuple[bytes, bytes, bytes]:
    """A lab device's certificate and key: its agent's (``agent``) or its peer one (``peer``)."""
    tls = home / "lab" / "devices" / name / "tls"
    return ca, (tls / f"{which}.key").read_bytes(), (tls / f"{which}.crt").read_bytes()


def _pids(home: Path) -> dict[str, int]:
    return {d.name: d.agent_pid for d in read_registry(home / "lab")}


def test_a_removed_devices_certificate_is_revoked_everywhere(pair: Fleet, cli: Cli,
                                                             home: Path) -> None:
    ca = pair.pki.ca_cert_path.read_bytes()
    stolen = _device_credentials(home, "lab-2", ca)
    stolen_peer = _device_credentials(home, "lab-2", ca, "peer")
    for creds in (stolen, stolen_peer):
        with _as(pair, "lab-1", creds) as client, pytest.raises(AgentRefused) as info:
            client.get_store()  # a device's certificates never manage another device
        assert info.value.code == "PERMISSION_DENIED"
        assert "served to the fleet controller only" in info.value.message

    removed = cli("device", "remove", "lab-2")
    assert removed.code == 0, removed.err
    assert "revoked its certificate" in removed.out and "delivered to 1 of 1" in removed.out
    for creds in (stolen, stolen_peer):  # its peer certificate goes with it
        with _as(pair, "lab-1", creds) as client, pytest.raises(AgentRefused) as info:
            client.get_profile()
        assert info.value.code == "UNAUTHENTICATED" and "was revoked" in info.value.message
    with pytest.raises(Exception, match="no device named"):
        pair.inventory.get_device("lab-2")  # and the controller no longer talks to it
    with pair.client(pair.inventory.get_device("lab-1")) as client:
        assert client.get_profile().emulated  # the controller itself is unaffected
    status = json.loads(cli("pki", "status", "--json").out)
    assert status["crl_number"] == 1 and sorted(r["subject"] for r in status["revoked"]) == [
        "lab-2", "peer:lab-2"]
    (lab1,) = [c for c in status["certificates"] if c["subject"] == "lab-1"]
    assert lab1["crl_number"] == 1 and not lab1["note"]


def test_a_lost_controllers_certificate_is_revoked_and_agents_keep_serving(
        pair: Fleet, cli: Cli, home: Path) -> None:
    lost = pair.pki.client_credentials()  # what a stolen laptop holds
    pids = _pids(home)
    rotated = cli("pki", "rotate", "--controller", "--revoke-old")
    assert rotated.code == 0, rotated.err
    assert "revocation list delivered to 2 of 2 devices" in rotated.out
    for name in ("lab-1", "lab-2"):
        with _as(pair, name, lost) as client, pytest.raises(AgentRefused) as info:
            client.get_store()
        assert info.value.code == "UNAUTHENTICATED" and "edgefleet-controller" in (
            info.value.message)
    fresh = Fleet.open()  # the new certificate, read from the PKI directory
    assert fresh.pki.client_credentials() != lost
    assert cli("deploy", "tiny-llama", "--group", "lab").code == 0
    assert _pids(home) == pids  # no agent restarted


def test_a_device_certificate_rotates_without_a_restart_or_a_failed_call(
        pair: Fleet, cli: Cli, home: Path) -> None:
    device = pair.inventory.get_device("lab-1")
    before = served_certificate("lab-1", f"{device.host}:{device.agent_port}",
                                pair.pki.client_credentials())
    pids = _pids(home)
    peer_before = cert_info((home / "lab" / "devices" / "lab-1" / "tls" / "peer.crt")
                            .read_bytes())
    failures: list[str] = []
    calls = [0]
    stop = threading.Event()

    def keep_calling() -> None:
        with pair.client(device) as client:  # one channel, open across the rotation
            for _ in range(2000):  # bounded
                if stop.is_set():
                    return
                try:
                    client.get_profile()
                    calls[0] += 1
                except Exception as exc:  # noqa: BLE001 - every failure is the finding
                    failures.append(str(exc))

    worker = threading.Thread(target=keep_calling)
    worker.start()
    try:
        rotated = cli("pki", "rotate", "--device", "lab-1")
    finally:
        stop.set()
        worker.join(60)
    assert rotated.code == 0, rotated.err
    assert "lab-1: serving new certificate" in rotated.out
    assert failures == [] and calls[0] > 0
    after = served_certificate("lab-1", f"{device.host}:{device.agent_port}",
                               pair.pki.client_credentials())
    assert after.serial != before.serial and after.subject == "lab-1"
    assert _pids(home) == pids
    with pair.client(device) as client:  # new connections: the new certificate
        assert client.get_profile().emulated
    tls = home / "lab" / "devices" / "lab-1" / "tls"
    for key in (tls / "agent.key", tls / "peer.key"):
        assert stat.S_IMODE(key.stat().st_mode) == 0o600
    live = json.loads(cli("pki", "status", "--live", "--json").out)
    (lab1,) = [c for c in live["certificates"] if c["subject"] == "lab-1"]
    assert lab1["served_serial"] == lab1["serial"] == f"{after.serial:x}"
    # its peer certificate is renewed with it
    (peer,) = [c for c in live["certificates"] if c["subject"] == "peer:lab-1"]
    assert peer["serial"] == f"{cert_info((tls / 'peer.crt').read_bytes()).serial:x}"
    assert peer["serial"] != f"{peer_before.serial:x}"


def test_a_new_signing_key_reaches_every_device_and_the_old_one_is_refused(
        pair: Fleet, cli: Cli, model_cache: Path) -> None:
    q2 = gguf(model_cache, "q2_k")
    stage(pair, "lab-1", q2)
    signed = fields(q2, "q2_k")
    body, signature = manifest_signer(pair, "lab-1")(signed)  # by the old key, not sent yet
    rotated = cli("pki", "rotate", "--signing-key")
    assert rotated.code == 0, rotated.err
    assert "signing key delivered to 2 of 2 devices" in rotated.out
    with pair.client(pair.inventory.get_device("lab-1")) as client, \
            pytest.raises(AgentRefused) as info:
        client.load_model(request(signed, body, signature))
    assert "refused (signature)" in info.value.message
    assert cli("deploy", "tiny-llama", "--group", "lab").code == 0  # signed by the new key


def test_keys_are_private_from_their_first_byte(tmp_path: Path) -> None:
    root = tmp_path / "pki"
    root.mkdir(mode=0o755)
    bait = tmp_path / "bait"
    bait.write_bytes(b"untouched")
    (root / ".ca.key.tmp").symlink_to(bait)  # a planted temporary name is never followed
    old_umask = os.umask(0)  # the widest umask: modes come from the code alone
    try:
        pki = FleetPki(root).ensure()
    finally:
        os.umask(old_umask)
    assert stat.S_IMODE(root.stat().st_mode) == 0o700
    for key in (pki.ca_key_path, pki.client_key_path, pki.signing_key_path):
        assert stat.S_IMODE(key.stat().st_mode) == 0o600, key
    assert bait.read_bytes() == b"untouched"
    assert cert_info(pki.client_cert_path.read_bytes()).role == "controller"
    assert cert_info(pki.issue("kiosk-1").cert_pem).role == "device"


def test_keys_kept_apart_and_encrypted(pair: Fleet, cli: Cli, home: Path, tmp_path: Path,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLEET_PKI_PASSPHRASE", "correct horse")
    moved = cli("pki", "protect", "--to", str(tmp_path / "stick"))
    assert moved.code == 0, moved.err
    assert "(encrypted)" in moved.out
    ca_key, signing_key = tmp_path / "stick" / "ca.key", tmp_path / "stick" / "signing.key"
    assert not (home / "pki" / "ca.key").exists() and not (home / "pki" / "signing.key").exists()
    assert b"ENCRYPTED" in signing_key.read_bytes()[:64]
    assert stat.S_IMODE(signing_key.stat().st_mode) == 0o600
    monkeypatch.setenv("FLEET_CA_KEY", str(ca_key))
    monkeypatch.setenv("FLEET_SIGNING_KEY", str(signing_key))
    monkeypatch.delenv("FLEET_PKI_PASSPHRASE")
    status = cli("status", "--json")  # day-to-day commands need neither key
    assert status.code == 0, status.err
    locked = cli("deploy", "tiny-llama", "--device", "lab-1")
    assert locked.code != 0 and "passphrase-protected" in locked.out + locked.err
    monkeypatch.setenv("FLEET_PKI_PASSPHRASE", "wrong")
    wrong = cli("deploy", "tiny-llama", "--device", "lab-1")
    assert "wrong passphrase" in wrong.out + wrong.err
    passphrase = tmp_path / "passphrase"
    passphrase.write_text("correct horse\n")
    monkeypatch.delenv("FLEET_PKI_PASSPHRASE")
    monkeypatch.setenv("FLEET_PKI_PASSPHRASE_FILE", str(passphrase))
    assert cli("deploy", "tiny-llama", "--device", "lab-1").code == 0
    info = json.loads(cli("pki", "status", "--json").out)
    keys = {k["what"]: k for k in info["keys"]}
    assert keys["signing key"]["encrypted"] and keys["CA key"]["path"] == str(ca_key)
    assert not keys["controller TLS key"]["encrypted"]


def test_pki_status_warns_ahead_of_expiry(pair: Fleet, cli: Cli) -> None:
    calm = cli("pki", "status", "--check")
    assert calm.code == 0, calm.err + calm.out
    assert "lab-1" in calm.out and "controller" in calm.out
    worried = cli("pki", "status", "--warn-days", "1000", "--check")
    assert worried.code == 1
    assert "certificate lab-1 expires" in worried.out
    assert "fleet pki rotate --device lab-1" in worried.out


def test_the_pki_without_its_keys_never_makes_new_ones(tmp_path: Path) -> None:
    pki = FleetPki(tmp_path / "pki").ensure()
    pub = pki.signing_pub_path.read_bytes()
    elsewhere = FleetPki(tmp_path / "pki", signing_key_path=tmp_path / "absent.key").ensure()
    assert elsewhere.signing_pub_path.read_bytes() == pub  # no new key made
    with pytest.raises(PkiError, match="is not at"):
        elsewhere.sign_manifest({"v": 2})
