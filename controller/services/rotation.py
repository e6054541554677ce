"""`fleet pki rotate`: new certificates and keys while the fleet keeps working.

- The controller's certificate: a new key and certificate replace the old ones here. Agents
  trust the CA, not one controller certificate, so nothing changes on a device; a process
  still holding the old certificate keeps working until it ends, unless ``revoke_old``
  (after a lost laptop) puts it on the revocation list every agent checks.
- A device's certificate: a new key and certificate are written into its TLS directory over
  SSH; the agent switches at its next TLS handshake without a restart (calls in flight go
  on), and the controller confirms with a handshake of its own that the new certificate is
  the one served before it records it as current. The old certificate is not revoked (its
  key was overwritten on the device) unless ``revoke_old``.
- The signing key: a new key here, its public half delivered to every enrolled device. Load
  orders are short-lived and signed when sent, so there is no overlap to keep: a device not
  reached refuses new load orders (naming the signature) until ``fleet pki push``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from agent.peer_contract import peer_common_name
from controller.adapters.audit_log import audit
from controller.adapters.pki import CONTROLLER_NAME, cert_info
from controller.adapters.tables import Device
from controller.adapters.tls_probe import served_certificate
from controller.errors import FleetError, UsageError
from controller.services.context import Fleet
from controller.services.trust import (
    Delivered,
    deliver,
    enrolled,
    record_controller,
    sign_revocations,
    trust_records,
)

CONFIRM_S = 15.0


@dataclass(frozen=True)
class Rotated:
    subject: str
    ok: bool
    old_serial: int = 0
    new_serial: int = 0
    detail: str = ""
    revoked: bool = False


def rotate_controller(fleet: Fleet, revoke_old: bool = False) -> tuple[Rotated, list[Delivered]]:
    """A new controller certificate; with ``revoke_old`` the old one is revoked and the
    revocation list delivered to every enrolled device."""
    record_controller(fleet)
    old = cert_info(fleet.pki.client_cert_path.read_bytes())
    issued = fleet.pki.renew_controller()
    records = trust_records(fleet)
    records.record_cert(issued.serial, CONTROLLER_NAME, "controller",
                        cert_info(issued.cert_pem).not_after)
    delivered: list[Delivered] = []
    if revoke_old:
        records.revoke(CONTROLLER_NAME, "superseded", serials=[old.serial])
        sign_revocations(fleet)
        delivered = deliver(fleet, enrolled(fleet),
                            common={"crl.pem": fleet.pki.crl_path.read_bytes()})
    audit("rotate-controller", old_serial=f"{old.serial:x}", new_serial=f"{issued.serial:x}",
          revoked_old=revoke_old)
    return Rotated(CONTROLLER_NAME, True, old.serial, issued.serial, revoked=revoke_old), \
        delivered


def confirm_served(fleet: Fleet, device: Device, serial: int,
                   timeout_s: float = CONFIRM_S) -> str:
    """Wait until the device's agent serves certificate ``serial``; "" when it does, else
    what it serves (or why it could not be asked)."""
    deadline = time.monotonic() + timeout_s
    seen = ""
    while True:
        try:
            with fleet.client(device, timeout_s=5) as client:
                served = served_certificate(device.name, client.address,
                                            fleet.pki.client_credentials())
            if served.serial == serial:
                return ""
            seen = f"it still serves certificate {served.serial:x}"
        except FleetError as exc:
            seen = exc.detail
        if time.monotonic() > deadline:
            return seen
        time.sleep(0.3)


def rotate_devices(fleet: Fleet, names: list[str], revoke_old: bool = False) -> list[Rotated]:
    """New certificates for the named enrolled devices, pushed over SSH and confirmed."""
    devices = enrolled(fleet, names)
    missing = sorted(set(names) - {d.name for d in devices})
    if missing:
        for name in missing:
            fleet.inventory.get_device(name)
        raise UsageError(f"not enrolled: {', '.join(missing)}",
                         hint="only enrolled devices (or a lab with TLS) hold certificates")
    records = trust_records(fleet)
    issued = {d.name: fleet.pki.issue(d.name, address=d.host) for d in devices}
    # its peer certificate (agent.peer_identity) is renewed with it
    peers = {d.name: fleet.pki.issue(peer_common_name(d.name), client=True, role="device")
             for d in devices}
    files = {name: {"agent.key": i.key_pem, "agent.crt": i.cert_pem,
                    "peer.key": peers[name].key_pem, "peer.crt": peers[name].cert_pem}
             for name, i in issued.items()}
    outcomes = []
    for device, delivered in zip(devices, deliver(fleet, devices, files), strict=True):
        new = issued[device.name]
        old = [c.serial for c in records.certs(device.name) if c.current]
        if not delivered.ok:
            outcomes.append(Rotated(device.name, False, old[0] if old else 0, new.serial,
                                    f"not delivered: {delivered.detail}"))
            continue
        problem = confirm_served(fleet, device, new.serial)
        if problem:
            outcomes.append(Rotated(device.name, False, old[0] if old else 0, new.serial,
                                    f"written, but the agent did not switch: {problem}"))
            continue
        assert new.not_after is not None
        peer, peer_name = peers[device.name], peer_common_name(device.name)
        old_peer = [c.serial for c in records.certs(peer_name) if c.current]
        records.record_cert(new.serial, device.name, "device", new.not_after)
        assert peer.not_after is not None
        records.record_cert(peer.serial, peer_name, "device", peer.not_after)
        if revoke_old and old:
            records.revoke(device.name, "superseded", serials=old)
        if revoke_old and old_peer:
            records.revoke(peer_name, "superseded", serials=old_peer)
        outcomes.append(Rotated(device.name, True, old[0] if old else 0, new.serial,
                                revoked=revoke_old and bool(old)))
    if revoke_old and any(o.revoked for o in outcomes):
        sign_revocations(fleet)
        deliver(fleet, enrolled(fleet), common={"crl.pem": fleet.pki.crl_path.read_bytes()})
    audit("rotate-devices", devices={o.subject: {"ok": o.ok, "new_serial": f"{o.new_serial:x}",
                                                 "detail": o.detail} for o in outcomes},
          revoked_old=revoke_old)
    return outcomes


def rotate_signing_key(fleet: Fleet) -> tuple[str, list[Delivered]]:
    """A new manifest-signing key; its public half delivered to every enrolled device."""
    before = fleet.pki.signing_fingerprint()
    public = fleet.pki.renew_signing_key()
    delivered = deliver(fleet, enrolled(fleet), common={"signing.pub": public})
    after = fleet.pki.signing_fingerprint()
    audit("rotate-signing-key", old=before, new=after,
          delivered=[d.device for d in delivered if d.ok],
          failed=[d.device for d in delivered if not d.ok])
    return after, delivered
