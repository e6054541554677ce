"""What the fleet trusts, and how that changes: certificates issued and recorded, a removed
device's certificate revoked, the revocation list and the signing key delivered to agents.

Revocation is a certificate revocation list (``crl.pem``, X.509, signed by the fleet CA)
that every agent checks on every call to its mutual-TLS listener (agent.client_auth). The
controller keeps the record (``issued_cert``), signs a new list when something is revoked and
delivers it over SSH to every enrolled device; a device it could not reach is named and
gets it with ``fleet pki push`` (``fleet pki status`` shows which list each device holds).
The controller itself never contacts a removed device: it has no record of it any more.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from agent.peer_contract import peer_common_name
from controller.adapters.audit_log import audit
from controller.adapters.pki import CONTROLLER_NAME, cert_info
from controller.adapters.tables import Device
from controller.adapters.trust_delivery import SshTrustDelivery, tls_dir_of
from controller.adapters.trust_repo import SqlTrust
from controller.errors import FleetError
from controller.services.context import Fleet

PUSH_CONCURRENCY = 8


@dataclass(frozen=True)
class Delivered:
    device: str
    ok: bool
    detail: str = ""


@dataclass(frozen=True)
class Revocation:
    device: str
    serials: list[int]
    crl_number: int
    delivered: list[Delivered]


def trust_records(fleet: Fleet) -> SqlTrust:
    return SqlTrust(fleet.inventory.engine)


def issue_agent_files(fleet: Fleet, name: str, address: str) -> dict[str, bytes]:
    """A device's TLS directory (its new certificate and key, the CA, the signing key, the
    revocation list), its certificate recorded as the device's current one."""
    files = fleet.pki.agent_files(name, address)
    records = trust_records(fleet)
    info = cert_info(files["agent.crt"])
    records.record_cert(info.serial, name, "device", info.not_after)
    peer = cert_info(files["peer.crt"])  # its peer identity, revoked with it
    records.record_cert(peer.serial, peer_common_name(name), "device", peer.not_after)
    return files


def record_controller(fleet: Fleet) -> None:
    """Record the controller's certificate if it is not yet (made before records existed)."""
    info = cert_info(fleet.pki.client_cert_path.read_bytes())
    records = trust_records(fleet)
    if not any(c.serial == info.serial for c in records.certs(CONTROLLER_NAME)):
        records.record_cert(info.serial, CONTROLLER_NAME, "controller", info.not_after)


def sign_revocations(fleet: Fleet) -> int:
    """Sign a new revocation list from the records; its number."""
    revoked = [(c.serial, c.revoked_at or dt.datetime.now(dt.timezone.utc))
               for c in trust_records(fleet).revoked()]
    number, _ = fleet.pki.sign_crl(revoked)
    return number


def enrolled(fleet: Fleet, names: Iterable[str] | None = None) -> list[Device]:
    """Devices whose agents hold trust material (enrolled, or lab devices with TLS)."""
    wanted = set(names) if names is not None else None
    return [d for d in fleet.inventory.list_devices()
            if tls_dir_of(d) and (wanted is None or d.name in wanted)]


def deliver(fleet: Fleet, devices: list[Device], files_for: dict[str, dict[str, bytes]] | None
            = None, common: dict[str, bytes] | None = None) -> list[Delivered]:
    """Write ``common`` (and each device's own ``files_for[name]``) into each device's TLS
    directory over SSH, in parallel; one outcome per device (one unreachable device never
    stops the others). Records which revocation list each device now holds."""
    shared = common if common is not None else fleet.pki.trust_files()
    crl_number = fleet.pki.crl_number() if "crl.pem" in shared else 0
    delivery = SshTrustDelivery(fleet.transfer)
    records = trust_records(fleet)

    def one(device: Device) -> Delivered:
        files = {**shared, **(files_for or {}).get(device.name, {})}
        try:
            delivery.deliver(device, fleet.ssh_target(device), files)
        except FleetError as exc:
            return Delivered(device.name, False, exc.detail)
        if crl_number:
            records.delivered(device.name, crl_number)
        return Delivered(device.name, True)

    if not devices:
        return []
    with ThreadPoolExecutor(max_workers=min(PUSH_CONCURRENCY, len(devices))) as pool:
        return list(pool.map(one, devices))


def revoke_device(fleet: Fleet, name: str, reason: str = "removed") -> Revocation:
    """Revoke every certificate issued to ``name``, sign a new revocation list and deliver it
    to every other enrolled device. Recorded in the audit log."""
    records = trust_records(fleet)
    serials = records.revoke(name, reason) + records.revoke(peer_common_name(name), reason)
    if not serials:
        return Revocation(name, [], fleet.pki.crl_number(), [])
    number = sign_revocations(fleet)
    audit("revoke", subject=name, reason=reason, serials=[f"{s:x}" for s in serials],
          crl_number=number)
    others = [d for d in enrolled(fleet) if d.name != name]
    return Revocation(name, serials, number, deliver(fleet, others, common={
        "crl.pem": fleet.pki.crl_path.read_bytes()}))


def push(fleet: Fleet, names: list[str] | None = None) -> list[Delivered]:
    """Give devices the current CA, signing key and revocation list (those a rotation or a
    removal could not reach)."""
    devices = enrolled(fleet, names)
    if names:
        missing = sorted(set(names) - {d.name for d in devices})
        for name in missing:
            fleet.inventory.get_device(name)  # unknown: a clear error
        if missing:
            raise FleetError(f"{', '.join(missing)} not enrolled: nothing to push",
                             hint="`fleet device enroll NAME` gives a device its trust")
    delivered = deliver(fleet, devices)
    audit("push", devices=[d.device for d in delivered if d.ok],
          failed=[d.device for d in delivered if not d.ok], crl_number=fleet.pki.crl_number())
    return delivered
