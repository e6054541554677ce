"""`fleet pki status`: what the fleet trusts and when it expires.

From the records and the PKI directory (no device contacted): the CA, the controller's
certificate, where the CA and signing keys live and whether they are encrypted, each
enrolled device's current certificate and the revocation list it was last given. With
``live``, each agent is also asked (a TLS handshake) which certificate it serves. Anything
that expires within ``warn_days`` (or has expired) is a warning.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from agent.peer_contract import PEER_CN_PREFIX, peer_common_name
from controller.adapters.pki import CONTROLLER_NAME, cert_info, is_encrypted
from controller.adapters.tls_probe import served_certificate
from controller.errors import FleetError
from controller.services.context import Fleet
from controller.services.trust import enrolled, record_controller, trust_records


@dataclass(frozen=True)
class CertLine:
    what: str  # ca | controller | device | peer (a device's peer certificate)
    subject: str
    serial: int
    not_after: dt.datetime | None
    days_left: float | None
    note: str = ""
    crl_number: int | None = None  # devices: the revocation list they were last given
    served_serial: int | None = None  # live: what the agent serves


@dataclass(frozen=True)
class KeyLine:
    what: str
    path: str
    present: bool
    encrypted: bool


@dataclass
class PkiStatus:
    certs: list[CertLine]
    keys: list[KeyLine]
    signing_fingerprint: str
    crl_number: int
    revoked: list[tuple[str, str, str]]  # serial, subject, reason
    warnings: list[str] = field(default_factory=list)


def _days(not_after: dt.datetime, now: dt.datetime) -> float:
    return (not_after - now).total_seconds() / 86400


def pki_status(fleet: Fleet, warn_days: float = 30.0, live: bool = False) -> PkiStatus:
    now = dt.datetime.now(dt.timezone.utc)
    pki = fleet.pki
    record_controller(fleet)
    records = trust_records(fleet)
    ca = cert_info(pki.ca_cert_path.read_bytes())
    controller = cert_info(pki.client_cert_path.read_bytes())
    lines = [CertLine("ca", "edgefleet fleet CA", ca.serial, ca.not_after,
                      _days(ca.not_after, now)),
             CertLine("controller", CONTROLLER_NAME, controller.serial, controller.not_after,
                      _days(controller.not_after, now))]
    current_crl = pki.crl_number()
    held = records.deliveries()
    for device in enrolled(fleet):
        current = [c for c in records.certs(device.name) if c.current and not c.revoked_at]
        serial, not_after = (current[-1].serial, current[-1].not_after) if current else (0, None)
        note = "" if current else ("not in the records (enrolled before they were kept): "
                                   f"`fleet pki rotate --device {device.name}` re-issues it")
        served: int | None = None
        if live:
            try:
                with fleet.client(device, timeout_s=5) as client:
                    info = served_certificate(device.name, client.address,
                                              pki.client_credentials())
            except FleetError as exc:
                note = f"not reachable: {exc.detail}"
            else:
                served = info.serial
                if not current:
                    serial, not_after = info.serial, info.not_after
                    note = "not in the records (enrolled before they were kept); as served"
                elif served != serial:
                    note = f"serves {served:x}, not the recorded {serial:x}"
        crl = held.get(device.name)
        if current_crl and (crl or 0) < current_crl and not note:
            note = (f"holds revocation list {crl or 'none'}, the current is {current_crl}: "
                    f"`fleet pki push --device {device.name}`")
        lines.append(CertLine("device", device.name, serial, not_after,
                              _days(not_after, now) if not_after else None, note, crl, served))
        peer = [c for c in records.certs(peer_common_name(device.name))
                if c.current and not c.revoked_at]
        if peer:  # its client identity towards its site's devices (docs/delivery.md)
            lines.append(CertLine("peer", peer_common_name(device.name), peer[-1].serial,
                                  peer[-1].not_after, _days(peer[-1].not_after, now)))
    keys = [KeyLine("CA key", str(pki.ca_key_path), pki.ca_key_path.exists(),
                    is_encrypted(pki.ca_key_path)),
            KeyLine("signing key", str(pki.signing_key_path), pki.signing_key_path.exists(),
                    is_encrypted(pki.signing_key_path)),
            KeyLine("controller TLS key", str(pki.client_key_path),
                    pki.client_key_path.exists(), is_encrypted(pki.client_key_path))]
    status = PkiStatus(lines, keys, pki.signing_fingerprint(), current_crl,
                       [(f"{c.serial:x}", c.subject, c.revoke_reason) for c in records.revoked()])
    for line in lines:
        if line.days_left is not None and line.days_left < warn_days:
            verb = "expired" if line.days_left < 0 else "expires"
            status.warnings.append(
                f"{line.what} certificate {line.subject} {verb} "
                f"{line.not_after:%Y-%m-%d} ({line.days_left:.0f} days): `fleet pki rotate "
                + {"ca": "` cannot renew the CA yet; see docs/security.md",
                   "controller": "--controller`",
                   "device": f"--device {line.subject}`",
                   "peer": f"--device {line.subject.removeprefix(PEER_CN_PREFIX)}`"}[line.what])
        if line.what == "device" and line.note and line.note.startswith(("serves", "not reach",
                                                                         "holds")):
            status.warnings.append(f"{line.subject}: {line.note}")
    return status
