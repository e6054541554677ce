"""The controller's small PKI: a CA, the controller's client certificate, one server
certificate per agent, and an ed25519 key that signs artifact manifests.

Everything lives in ``$FLEET_HOME/pki`` (keys 0600). Certificates use ECDSA P-256, which
every gRPC build supports.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from agent.peer_contract import peer_common_name

CA_DAYS = 3650
LEAF_DAYS = 730


@dataclass(frozen=True)
class Issued:
    cert_pem: bytes
    key_pem: bytes


def _write_private(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    os.replace(tmp, path)


def _key_pem(key: Any) -> bytes:
    return bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                   serialization.NoEncryption()))


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "edgefleet"),
                      x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


class FleetPki:
    def __init__(self, root: Path) -> None:
        self.root = root
        self._client_credentials: tuple[bytes, bytes, bytes] | None = None
        self._signing_key: ed25519.Ed25519PrivateKey | None = None
        self.ca_cert_path = root / "ca.crt"
        self.ca_key_path = root / "ca.key"
        self.client_cert_path = root / "controller.crt"
        self.client_key_path = root / "controller.key"
        self.signing_key_path = root / "signing.key"
        self.signing_pub_path = root / "signing.pub"

    # -- set-up ---------------------------------------------------------------------------
    def ensure(self) -> FleetPki:
        """Create the CA, the controller's client certificate and the signing key once."""
        if not self.ca_cert_path.exists():
            key = ec.generate_private_key(ec.SECP256R1())
            now = dt.datetime.now(dt.timezone.utc)
            cert = (
                x509.CertificateBuilder().subject_name(_name("edgefleet fleet CA"))
                .issuer_name(_name("edgefleet fleet CA")).public_key(key.public_key())
                .serial_number(x509.random_serial_number())
                .not_valid_before(now - dt.timedelta(minutes=5))
                .not_valid_after(now + dt.timedelta(days=CA_DAYS))
                .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
                .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False,
                                             False), critical=True)
                .sign(key, hashes.SHA256())
            )
            _write_private(self.ca_key_path, _key_pem(key))
            self.ca_cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        if not self.client_cert_path.exists():
            issued = self.issue("edgefleet-controller", client=True)
            _write_private(self.client_key_path, issued.key_pem)
            self.client_cert_path.write_bytes(issued.cert_pem)
        if not self.signing_key_path.exists():
            signing = ed25519.Ed25519PrivateKey.generate()
            _write_private(self.signing_key_path, _key_pem(signing))
            self.signing_pub_path.write_bytes(signing.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
        return self

    def issue(self, name: str, client: bool = False, address: str = "") -> Issued:
        """A leaf certificate for ``name`` (an agent's device name, or the controller)."""
        ca_key = serialization.load_pem_private_key(self.ca_key_path.read_bytes(), None)
        ca_cert = x509.load_pem_x509_certificate(self.ca_cert_path.read_bytes())
        key = ec.generate_private_key(ec.SECP256R1())
        now = dt.datetime.now(dt.timezone.utc)
        sans: list[x509.GeneralName] = [x509.DNSName(name)]
        if address:
            try:
                sans.append(x509.IPAddress(ipaddress.ip_address(address)))
            except ValueError:
                sans.append(x509.DNSName(address))
        usage = ExtendedKeyUsageOID.CLIENT_AUTH if client else ExtendedKeyUsageOID.SERVER_AUTH
        cert = (
            x509.CertificateBuilder().subject_name(_name(name)).issuer_name(ca_cert.subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=LEAF_DAYS))
            .add_extension(x509.SubjectAlternativeName(sans), critical=False)
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .sign(ca_key, hashes.SHA256())  # type: ignore[arg-type]
        )
        return Issued(cert.public_bytes(serialization.Encoding.PEM), _key_pem(key))

    # -- use ------------------------------------------------------------------------------
    def client_credentials(self) -> tuple[bytes, bytes, bytes]:
        """(CA, controller key, controller certificate) for a gRPC channel (read once)."""
        if self._client_credentials is None:
            self._client_credentials = (self.ca_cert_path.read_bytes(),
                                        self.client_key_path.read_bytes(),
                                        self.client_cert_path.read_bytes())
        return self._client_credentials

    def sign_manifest(self, manifest: dict[str, Any]) -> tuple[bytes, bytes]:
        """Canonical JSON of ``manifest`` and its ed25519 signature."""
        if self._signing_key is None:
            key = serialization.load_pem_private_key(self.signing_key_path.read_bytes(), None)
            assert isinstance(key, ed25519.Ed25519PrivateKey)
            self._signing_key = key
        body = json.dumps(manifest, sort_keys=True, separators=(",", ":")).encode()
        return body, self._signing_key.sign(body)

    def agent_files(self, name: str, address: str) -> dict[str, bytes]:
        """What a device's agent gets at enrollment (or lab start): its certificate and key,
        the fleet CA, the manifest-signing public key, and its peer (client) certificate."""
        issued = self.issue(name, address=address)
        # the client identity it fetches blobs from its peers with (agent.peer_identity)
        peer = self.issue(peer_common_name(name), client=True)
        return {"agent.crt": issued.cert_pem, "agent.key": issued.key_pem,
                "ca.crt": self.ca_cert_path.read_bytes(),
                "signing.pub": self.signing_pub_path.read_bytes(),
                "peer.crt": peer.cert_pem, "peer.key": peer.key_pem}


def cert_expiry_pem(pem: bytes) -> dt.datetime | None:
    """When a PEM certificate stops being valid (UTC); None when it cannot be read."""
    try:
        return x509.load_pem_x509_certificate(pem).not_valid_after_utc
    except ValueError:
        return None


def cert_expiry(path: Path) -> dt.datetime | None:
    """``cert_expiry_pem`` of a file; None when it is missing or unreadable."""
    try:
        return cert_expiry_pem(path.read_bytes())
    except OSError:
        return None
