"""Who a device is to its peers, and the controller's signed instruction that lets one peer
read a blob from another (the *grant*).

``TLS_DIR`` (written at enrollment, or by the lab) holds, beside the agent's server
certificate, a client certificate for peer transfers: ``peer.crt``/``peer.key``, issued by the
fleet CA to ``peer:<device>`` with the client-auth usage only. A device enrolled before peer
transfers existed has none: it is sent its blobs by the controller, as before.

A grant is canonical JSON signed with the controller's manifest key (the key the agent pins for
load orders). It names the blob, its chunk list (by the sha256 of the concatenated chunk
digests), the receiver, the devices it may read from, the rollout and an expiry. A serving
agent checks it names the caller (by the caller's certificate) as receiver and itself among the
sources; a receiving agent checks it names itself as receiver.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc

from agent.errors import InvalidRequest, ManifestRejected
from agent.peer_contract import (
    GRANT_KEYS,
    GRANT_KIND,
    PEER_CN_PREFIX,
    chunk_count,
    chunks_sha256,
)
from agent.store import check_sha256


@dataclass(frozen=True)
class PeerIdentity:
    name: str  # this device, as its agent certificate names it
    ca: bytes
    peer_cert: bytes
    peer_key: bytes
    signing_pub: bytes  # as read at start; ``pinned_keys`` follows a rotation
    tls_dir: Path | None = None

    def pinned_keys(self) -> bytes:
        """The signing key(s) pinned now: ``signing.pub`` as it is on disk (several keys
        while the controller rotates its signing key: agent.trust_store), else as read."""
        if self.tls_dir is not None:
            try:
                return (self.tls_dir / "signing.pub").read_bytes()
            except OSError:
                pass
        return self.signing_pub

    @classmethod
    def load(cls, tls_dir: Path) -> PeerIdentity | None:
        """The device's peer identity, or None when it has no peer certificate or no pinned
        signing key (it then takes blobs only from the controller)."""
        from cryptography import x509
        from cryptography.x509.oid import NameOID

        paths = [tls_dir / n for n in ("agent.crt", "ca.crt", "peer.crt", "peer.key",
                                        "signing.pub")]
        if not all(p.is_file() for p in paths):
            return None
        cert = x509.load_pem_x509_certificate(paths[0].read_bytes())
        names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
        if not names:
            return None
        ca, peer_cert, peer_key, signing_pub = (p.read_bytes() for p in paths[1:])
        return cls(str(names[0].value), ca, peer_cert, peer_key, signing_pub, tls_dir)

    def channel_credentials(self) -> grpc.ChannelCredentials:
        """For a connection to a peer: the CA and peer certificate as they are on disk now
        (`fleet pki rotate` replaces them while the agent runs), else as read at start."""
        ca, cert, key = self.ca, self.peer_cert, self.peer_key
        if self.tls_dir is not None:
            with contextlib.suppress(OSError):
                ca, cert, key = ((self.tls_dir / n).read_bytes()
                                 for n in ("ca.crt", "peer.crt", "peer.key"))
        return grpc.ssl_channel_credentials(root_certificates=ca, private_key=key,
                                            certificate_chain=cert)


@dataclass(frozen=True)
class Grant:
    sha256: str
    size_bytes: int
    chunk_bytes: int
    digests: tuple[bytes, ...]
    receiver: str
    sources: tuple[str, ...]
    rollout: str
    expires_at: float

    def digest(self, index: int) -> bytes:
        return self.digests[index]


def caller_peer(context: grpc.ServicerContext) -> str:
    """The device a caller's peer certificate names ("" for any other caller)."""
    names = (context.auth_context() or {}).get("x509_common_name") or []
    for raw in names:
        name = raw.decode(errors="replace") if isinstance(raw, bytes) else str(raw)
        if name.startswith(PEER_CN_PREFIX):
            return name[len(PEER_CN_PREFIX):]
    return ""


def _verified_json(signing_pub: bytes, body: bytes, signature: bytes) -> dict[str, Any]:
    from cryptography.exceptions import InvalidSignature

    if not body or not signature:
        raise ManifestRejected("a peer transfer needs the controller's signed grant; none "
                               "was sent")
    from agent.trust_store import signing_keys

    try:
        keys = signing_keys(signing_pub)
    except ValueError:
        raise ManifestRejected("the pinned signing key is not ed25519") from None
    for key in keys:
        try:
            key.verify(signature, body)
            break
        except InvalidSignature:
            continue
    else:
        raise ManifestRejected("the peer grant's signature is invalid (tampered or another "
                               "controller's key)")
    try:
        data = json.loads(body)
    except ValueError:
        raise ManifestRejected("the peer grant is not JSON") from None
    if not isinstance(data, dict):
        raise ManifestRejected("the peer grant is not a JSON object")
    return data


def verify_grant(signing_pub: bytes, instruction: bytes, signature: bytes,
                 digests: Sequence[bytes], now: float | None = None) -> Grant:
    """Check the controller's signature, the grant's shape and expiry, and that ``digests``
    are the chunk list it signed. Raises ``ManifestRejected`` or ``InvalidRequest``."""
    data = _verified_json(signing_pub, instruction, signature)
    if "v" in data or "device" in data:  # a load order, whatever else it holds
        raise ManifestRejected("a signed load order is not a peer grant")
    missing = [k for k in GRANT_KEYS if k not in data]
    if missing or data["kind"] != GRANT_KIND:
        raise ManifestRejected(f"not a peer grant (missing {', '.join(missing) or 'kind'})")
    sha = check_sha256(str(data["sha256"]))
    size, chunk = int(data["size_bytes"]), int(data["chunk_bytes"])
    if size <= 0 or chunk <= 0 or chunk % 4096:
        raise InvalidRequest(f"bad sizes in the peer grant ({size}, chunk {chunk})")
    if len(digests) != chunk_count(size, chunk) or any(len(d) != 32 for d in digests):
        raise InvalidRequest(f"the chunk list has {len(digests)} entries, the grant "
                             f"describes {chunk_count(size, chunk)} of 32 bytes")
    if chunks_sha256(digests) != data["chunks_sha256"]:
        raise ManifestRejected("the chunk list is not the one the controller signed")
    expires = float(data["expires_at"])
    if expires < (time.time() if now is None else now):
        raise ManifestRejected("the peer grant has expired; the controller issues a new one "
                               "when the rollout is resumed")
    sources = data["sources"]
    if not isinstance(sources, list):
        raise ManifestRejected("the peer grant's sources are not a list")
    return Grant(sha, size, chunk, tuple(bytes(d) for d in digests), str(data["receiver"]),
                 tuple(str(s) for s in sources), str(data["rollout"]), expires)
