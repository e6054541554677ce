"""The agent's trust material (written at enrollment over SSH): its TLS certificate and key,
the fleet CA it requires of clients, and the controller's pinned manifest-signing key.

``TLS_DIR`` holds ``agent.crt``, ``agent.key``, ``ca.crt`` and ``signing.pub``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc

from agent.errors import ManifestRejected
from agent.store import ModelRecord


@dataclass(frozen=True)
class TrustMaterial:
    cert: bytes
    key: bytes
    ca: bytes
    signing_pub: bytes  # b"" when no key is pinned

    @classmethod
    def load(cls, tls_dir: Path) -> TrustMaterial:
        pub = tls_dir / "signing.pub"
        return cls((tls_dir / "agent.crt").read_bytes(), (tls_dir / "agent.key").read_bytes(),
                   (tls_dir / "ca.crt").read_bytes(), pub.read_bytes() if pub.exists() else b"")

    def server_credentials(self) -> grpc.ServerCredentials:
        """Mutual TLS: clients must present a certificate signed by the fleet CA."""
        return grpc.ssl_server_credentials([(self.key, self.cert)], root_certificates=self.ca,
                                           require_client_auth=True)


def verify_manifest(signing_pub: bytes, record: ModelRecord, manifest: bytes,
                    signature: bytes, **bound: Any) -> dict[str, Any]:
    """Check the controller's signature and that the manifest describes this very load
    (``bound``: further request fields the manifest must carry, e.g. the trial deadline)."""
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519

    if not manifest or not signature:
        raise ManifestRejected("this agent requires a signed manifest; none was sent")
    key = serialization.load_pem_public_key(signing_pub)
    if not isinstance(key, ed25519.Ed25519PublicKey):
        raise ManifestRejected("the pinned signing key is not ed25519")
    try:
        key.verify(signature, manifest)
    except InvalidSignature:
        raise ManifestRejected("manifest signature is invalid (tampered or wrong key)") from None
    data = json.loads(manifest)
    expected = {"sha256": record.sha256, "size_bytes": record.size_bytes, "name": record.name,
                "variant": record.variant, "format": record.format}
    wrong = [k for k, v in expected.items() if data.get(k) != v]
    # bound fields a manifest leaves out are held to their defaults (no trial, no deadline)
    wrong += [k for k, v in bound.items() if data.get(k, type(v)()) != v]
    if wrong:
        raise ManifestRejected(f"manifest does not match the request ({', '.join(wrong)})")
    return dict(data)
