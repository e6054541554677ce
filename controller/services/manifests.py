"""Signed load orders, the controller's side of ``agent.manifest_check``.

Every load order is bound to one device, the rollout that issues it, the device's next
manifest version (a counter in the database, ``SqlTrust.next_seq``) and an expiry
(``FLEET_MANIFEST_TTL_S``, default 10 minutes), and signed with the fleet's signing key.
What is signed comes from the controller's own records and cache (the plan's artifact, its
estimate), never from what a device reports, so a device cannot obtain a signature for a
blob of its choosing; and a manifest is good for that device, once, for a short time.

``resync_version`` is the deliberate way back when a device's high-water mark is ahead of
the counter (a database restored from a backup): the operator reads the device's mark and
moves the counter past it, and the audit log records it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from agent.contract import MANIFEST_FORMAT
from controller import settings
from controller.adapters.audit_log import audit
from controller.adapters.trust_repo import SqlTrust
from controller.services.context import Fleet

Signer = Callable[[dict[str, Any]], tuple[bytes, bytes]]


def manifest_signer(fleet: Fleet, device: str, rollout: str = "") -> Signer:
    """Signs a load order's fields for ``device``, each call with a new version."""
    trust = SqlTrust(fleet.inventory.engine)
    ttl = int(settings.manifest_ttl_s())

    def sign(fields: dict[str, Any]) -> tuple[bytes, bytes]:
        now = int(time.time())
        return fleet.pki.sign_manifest({
            **fields, "v": MANIFEST_FORMAT, "device": device, "rollout": rollout,
            "seq": trust.next_seq(device), "issued_at": now, "expires_at": now + ttl})

    return sign


@dataclass(frozen=True)
class Resynced:
    device: str
    device_mark: int
    before: int
    after: int


def resync_version(fleet: Fleet, name: str) -> Resynced:
    """Read the device's manifest high-water mark and move this controller's counter up to
    it (never down), so the next load order is accepted; recorded in the audit log."""
    device = fleet.inventory.get_device(name)
    with fleet.client(device, timeout_s=10) as client:
        mark = int(client.get_store().manifest_seq)
    before, after = SqlTrust(fleet.inventory.engine).raise_seq(name, mark)
    audit("resync-version", device=name, device_mark=mark, counter_before=before,
          counter_after=after)
    return Resynced(name, mark, before, after)
