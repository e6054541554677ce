"""What an agent with a pinned signing key checks before it acts on a load order.

A manifest is canonical JSON signed (ed25519) by the controller's signing key::

    v              2 (this layout)
    device         the device it is for: this agent's certificate's name
    rollout        the rollout that issued it ("" for a load outside a rollout)
    seq            the device's manifest version: the controller's per-device counter
    issued_at      unix seconds on the controller's clock
    expires_at     after this (on the device's clock) the manifest is refused
    sha256, size_bytes, name, variant, format          the blob and what it is
    n_ctx, memory_bytes, trial, trial_seconds, runtime  how to run it
    base_sha256    format "lora" only: the base model the adapter applies on (absent or ""
                   for a model, so a model's manifest reads as before)
    aliases        sorted list of the names the model takes beside its own (absent: none)
    replace        true: every other model on the device is stopped (absent: false)
    pinned         true: never unloaded to make room for another model (absent: false)

Absent keys read as none/false, so a manifest of a controller before several models per
device reads as before; a request that sends any of them needs them signed.

The agent acts only on signed values: each request field it would use must equal the
manifest's (a request that differs is refused, naming the field), the memory guard uses the
signed estimate, the trial and its deadline are the signed ones. Checks, in order, each
refusal naming the check: signed, signature, format, device, expiry, the fields, version.
The version must be greater than the device's high-water mark (``state.json``
``manifest_seq``, written before the load starts, so it survives a restart and a failed load
alike): a manifest is good for one load on one device, once.
"""

from __future__ import annotations

import datetime as dt
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric import ed25519

from agent.contract import MANIFEST_FORMAT as FORMAT
from agent.errors import ManifestRejected, ManifestStale
from agent.store import ModelRecord, ModelStore

# Runtime options a manifest may carry and this agent acts on (none yet beyond n_ctx): an
# option it does not know is refused, never ignored.
RUNTIME_OPTIONS: frozenset[str] = frozenset()


@dataclass(frozen=True)
class LoadFields:
    """The fields of a load request the agent would act on."""

    sha256: str
    size_bytes: int
    name: str
    variant: str
    format: str
    n_ctx: int
    memory_bytes: int
    trial: bool
    trial_seconds: int
    base_sha256: str = ""  # format "lora": the base the adapter applies on
    aliases: tuple[str, ...] = ()
    replace: bool = False
    pinned: bool = False


@dataclass(frozen=True)
class LoadGrant:
    """A load the controller signed: everything the agent does comes from here."""

    record: ModelRecord
    memory_bytes: int
    trial: bool
    trial_seconds: int
    rollout: str
    seq: int
    base_sha256: str = ""  # format "lora": the base the adapter applies on
    aliases: tuple[str, ...] = ()  # sorted
    replace: bool = False
    pinned: bool = False


def _when(seconds: float) -> str:
    return dt.datetime.fromtimestamp(seconds, dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _seconds(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


def check_signature(keys: list[ed25519.Ed25519PublicKey], body: bytes,
                    signature: bytes) -> None:
    """Raises ManifestRejected unless one of ``keys`` signed ``body``."""
    if not body or not signature:
        raise ManifestRejected("refused (signed): this agent requires a manifest signed by "
                               "the fleet's signing key; none was sent", check="signed")
    for key in keys:
        try:
            key.verify(signature, body)
            return
        except InvalidSignature:
            continue
    raise ManifestRejected("refused (signature): the manifest's signature is invalid (tampered, "
                           "or signed by a key this device does not pin)", check="signature")


class ManifestGate:
    def __init__(self, keys: Callable[[], list[ed25519.Ed25519PublicKey]], device: str,
                 store: ModelStore, lock: threading.RLock | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self._keys = keys
        self.device = device
        self._store = store
        self._lock = lock or threading.RLock()  # the store's writer lock (AgentCore's)
        self._clock = clock

    def admit(self, request: LoadFields, body: bytes, signature: bytes) -> LoadGrant:
        """Check a load order; on success the device's high-water mark is the manifest's
        version. Raises ManifestRejected (ManifestStale for the version check)."""
        check_signature(self._keys(), body, signature)
        try:
            data: dict[str, Any] = json.loads(body)
        except ValueError:
            raise ManifestRejected("refused (format): the signed manifest is not JSON",
                                   check="format") from None
        if not isinstance(data, dict) or data.get("v") != FORMAT:
            found = data.get("v", 1) if isinstance(data, dict) else "?"
            raise ManifestRejected(
                f"refused (format): manifest format {found} is not {FORMAT}: it binds no "
                "device, version or expiry; upgrade the controller", check="format")
        if "kind" in data:  # a signed message of another kind (a peer grant) is no load order
            raise ManifestRejected(
                f"refused (format): a signed {data['kind']!r} message is not a load order",
                check="format")
        if data.get("device") != self.device:
            raise ManifestRejected(
                f"refused (device): the manifest is for device {data.get('device')!r}, this is "
                f"{self.device!r}", check="device")
        self._check_expiry(data)
        granted = self._check_fields(request, data)
        seq = data.get("seq")
        if not isinstance(seq, int) or isinstance(seq, bool) or seq < 1:
            raise ManifestRejected("refused (version): the manifest has no valid version",
                                   check="version")
        with self._lock:
            mark = self._store.read_state().manifest_seq
            if seq <= mark:
                raise ManifestStale(
                    f"refused (version): manifest version {seq} is not above this device's "
                    f"high-water mark {mark}: a manifest played again, or a controller whose "
                    "counter went back (a database restored from a backup)", check="version")
            self._store.raise_manifest_mark(seq)
        return LoadGrant(granted.record, granted.memory_bytes, granted.trial,
                         granted.trial_seconds, str(data.get("rollout", "")), seq,
                         granted.base_sha256, granted.aliases, granted.replace, granted.pinned)

    def _check_expiry(self, data: dict[str, Any]) -> None:
        issued, expires = _seconds(data.get("issued_at")), _seconds(data.get("expires_at"))
        if issued is None or expires is None or expires < issued:
            raise ManifestRejected("refused (expiry): the manifest has no valid validity "
                                   "period", check="expiry")
        now = self._clock()
        if now > expires:
            raise ManifestRejected(
                f"refused (expiry): the manifest was issued {_when(issued)} and expired "
                f"{_when(expires)}; this device's clock says {_when(now)} (a manifest "
                "captured earlier and played again, or the two clocks disagree: check NTP)",
                check="expiry")

    def _check_fields(self, request: LoadFields, data: dict[str, Any]) -> LoadGrant:
        runtime = data.get("runtime", {})
        if not isinstance(runtime, dict):
            raise ManifestRejected("refused (runtime): runtime options are not a mapping",
                                   check="runtime")
        unknown = sorted(set(runtime) - RUNTIME_OPTIONS)
        if unknown:
            raise ManifestRejected(f"refused (runtime): this agent does not know runtime "
                                   f"option(s) {', '.join(unknown)}; upgrade the agent",
                                   check="runtime")
        for field in ("sha256", "size_bytes", "name", "variant", "format", "n_ctx",
                      "memory_bytes", "trial", "trial_seconds"):
            signed, sent = data.get(field), getattr(request, field)
            if signed != sent or type(signed) is not type(sent):
                raise ManifestRejected(
                    f"refused ({field}): the request's {field} {sent!r} differs from the "
                    f"signed manifest's {signed!r}", check=field)
        base = data.get("base_sha256", "")
        if base != request.base_sha256:
            raise ManifestRejected(
                f"refused (base_sha256): the request's base {request.base_sha256[:12]!r} "
                f"differs from the signed manifest's {str(base)[:12]!r}", check="base_sha256")
        aliases = data.get("aliases", [])
        if not isinstance(aliases, list) or not all(isinstance(a, str) for a in aliases) \
                or aliases != sorted(set(aliases)):
            raise ManifestRejected("refused (aliases): the signed aliases are not a sorted "
                                   "list of names", check="aliases")
        if aliases != sorted(set(request.aliases)):
            raise ManifestRejected(
                f"refused (aliases): the request's aliases {sorted(request.aliases)!r} differ "
                f"from the signed manifest's {aliases!r}", check="aliases")
        for field in ("replace", "pinned"):
            signed, sent = data.get(field, False), getattr(request, field)
            if signed is not sent:  # both bools, equal
                raise ManifestRejected(
                    f"refused ({field}): the request's {field} {sent!r} differs from the "
                    f"signed manifest's {signed!r}", check=field)
        record = ModelRecord.from_dict({
            "sha256": data["sha256"], "name": data["name"], "variant": data["variant"],
            "format": data["format"], "n_ctx": data["n_ctx"], "size_bytes": data["size_bytes"]})
        return LoadGrant(record, int(data["memory_bytes"]), bool(data["trial"]),
                         int(data["trial_seconds"]), "", 0, str(base), tuple(aliases),
                         bool(data.get("replace", False)), bool(data.get("pinned", False)))
