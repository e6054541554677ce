"""The controller's small PKI: a CA, the controller's client certificate, one certificate per
agent, a revocation list, and an ed25519 key that signs load orders (manifests).

Layout (``$FLEET_HOME/pki``, a 0700 directory; every private key created 0600 with
``O_EXCL``, never widened and narrowed afterwards)::

    ca.crt, ca.key                the fleet CA (ECDSA P-256); the key only issues and revokes
    controller.crt, controller.key  the controller's TLS client certificate (role controller)
    signing.key, signing.pub      the manifest-signing key: not a TLS key, and may live apart
    crl.pem                       the certificates the fleet revoked, signed by the CA

The CA key and the signing key may live elsewhere (``FLEET_CA_KEY``, ``FLEET_SIGNING_KEY``:
removable media, another mount) and be encrypted with a passphrase (``FLEET_PKI_PASSPHRASE``
or a file named by ``FLEET_PKI_PASSPHRASE_FILE``); they are read only when they are used
(issuing, revoking, signing), so day-to-day commands (status, telemetry) never need them.
The controller's TLS key stays here unencrypted: every command that talks to an agent uses
it. Certificates carry their role in the organizational unit (``controller`` or ``device``):
agents serve their management API to the controller's role only (agent.client_auth).
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from agent.peer_contract import peer_common_name
from controller.adapters.private_files import private_dir, write_private, write_public
from controller.errors import PkiError

CA_DAYS = 3650
LEAF_DAYS = 730
CONTROLLER_NAME = "edgefleet-controller"
Passphrase = Callable[[], bytes | None]


@dataclass(frozen=True)
class Issued:
    cert_pem: bytes
    key_pem: bytes
    serial: int = 0
    not_after: dt.datetime | None = None


@dataclass(frozen=True)
class CertInfo:
    serial: int
    subject: str
    role: str
    not_before: dt.datetime
    not_after: dt.datetime


def cert_info(pem: bytes) -> CertInfo:
    cert = x509.load_pem_x509_certificate(pem)
    cn = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    ou = cert.subject.get_attributes_for_oid(NameOID.ORGANIZATIONAL_UNIT_NAME)
    subject = str(cn[0].value) if cn else ""
    role = str(ou[0].value) if ou else ("controller" if subject == CONTROLLER_NAME else "")
    return CertInfo(cert.serial_number, subject, role, cert.not_valid_before_utc,
                    cert.not_valid_after_utc)


def _key_pem(key: Any, passphrase: bytes | None = None) -> bytes:
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(passphrase) if passphrase
        else serialization.NoEncryption())
    return bytes(key.private_bytes(serialization.Encoding.PEM,
                                   serialization.PrivateFormat.PKCS8, encryption))


def _name(common_name: str, role: str = "") -> x509.Name:
    attrs = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, "edgefleet")]
    if role:
        attrs.append(x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, role))
    return x509.Name([*attrs, x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def is_encrypted(path: Path) -> bool:
    return path.is_file() and b"ENCRYPTED" in path.read_bytes()[:64]


class FleetPki:
    def __init__(self, root: Path, ca_key_path: Path | None = None,
                 signing_key_path: Path | None = None,
                 passphrase: Passphrase = lambda: None) -> None:
        self.root = root
        self._client_credentials: tuple[bytes, bytes, bytes] | None = None
        self._signing_key: ed25519.Ed25519PrivateKey | None = None
        self._passphrase = passphrase
        self.ca_cert_path = root / "ca.crt"
        self.ca_key_path = ca_key_path or root / "ca.key"
        self.client_cert_path = root / "controller.crt"
        self.client_key_path = root / "controller.key"
        self.signing_key_path = signing_key_path or root / "signing.key"
        self.signing_pub_path = root / "signing.pub"
        self.crl_path = root / "crl.pem"

    # -- set-up ---------------------------------------------------------------------------
    def ensure(self) -> FleetPki:
        """Create the CA, the controller's client certificate and the signing key once. A
        key that lives apart and is not there now is never replaced by a new one."""
        private_dir(self.root)
        if not self.ca_cert_path.exists():
            if self.ca_key_path.exists():
                raise PkiError(f"{self.ca_key_path} exists but {self.ca_cert_path} does not",
                               hint="restore ca.crt from your backup of the PKI directory")
            self._create_ca()
        if not self.client_cert_path.exists():
            self.renew_controller()
        if not self.signing_pub_path.exists():
            if self.signing_key_path.exists():
                write_public(self.signing_pub_path, _public_pem(self._load_signing_key()))
            else:
                key = ed25519.Ed25519PrivateKey.generate()
                write_private(self.signing_key_path, _key_pem(key, self._secret()))
                write_public(self.signing_pub_path, _public_pem(key))
        return self

    def _create_ca(self) -> None:
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
        write_private(self.ca_key_path, _key_pem(key, self._secret()))
        write_public(self.ca_cert_path, cert.public_bytes(serialization.Encoding.PEM))

    def renew_controller(self) -> Issued:
        """A new controller client certificate and key (the old ones are replaced)."""
        issued = self.issue(CONTROLLER_NAME, client=True)
        write_private(self.client_key_path, issued.key_pem)
        write_public(self.client_cert_path, issued.cert_pem)
        self._client_credentials = None
        return issued

    def renew_signing_key(self) -> bytes:
        """A new manifest-signing key replaces the old one (where it lives, encrypted when a
        passphrase is set); returns the new public key (PEM)."""
        key = ed25519.Ed25519PrivateKey.generate()
        write_private(self.signing_key_path, _key_pem(key, self._secret()))
        public = _public_pem(key)
        write_public(self.signing_pub_path, public)
        self._signing_key = key
        return public

    def signing_fingerprint(self) -> str:
        """sha256 of the signing key's public half (what `fleet pki status` shows)."""
        digest = hashes.Hash(hashes.SHA256())
        digest.update(self.signing_pub_path.read_bytes())
        return digest.finalize().hex()[:16]

    # -- keys kept apart --------------------------------------------------------------------
    def _secret(self) -> bytes | None:
        try:
            return self._passphrase()
        except OSError as exc:
            raise PkiError(f"cannot read the PKI passphrase file: {exc.strerror} "
                           f"({exc.filename})", hint="check FLEET_PKI_PASSPHRASE_FILE") from None

    def _load_private(self, path: Path, what: str, env: str) -> Any:
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise PkiError(f"the {what} is not at {path}",
                           hint=f"set {env} to where it lives (is the removable medium "
                           "mounted?)") from None
        try:
            return serialization.load_pem_private_key(
                data, self._secret() if b"ENCRYPTED" in data[:64] else None)
        except TypeError:
            raise PkiError(f"the {what} at {path} is passphrase-protected and no passphrase "
                           "was given", hint="set FLEET_PKI_PASSPHRASE, or "
                           "FLEET_PKI_PASSPHRASE_FILE to a file holding it") from None
        except ValueError:
            raise PkiError(f"the {what} at {path} could not be decrypted: wrong passphrase",
                           hint="check FLEET_PKI_PASSPHRASE / FLEET_PKI_PASSPHRASE_FILE") \
                from None

    def _load_signing_key(self) -> ed25519.Ed25519PrivateKey:
        key = self._load_private(self.signing_key_path, "manifest-signing key",
                                 "FLEET_SIGNING_KEY")
        if not isinstance(key, ed25519.Ed25519PrivateKey):
            raise PkiError(f"{self.signing_key_path} is not an ed25519 key",
                           hint="point FLEET_SIGNING_KEY at the fleet's signing key")
        return key

    def _ca(self) -> tuple[Any, x509.Certificate]:
        key = self._load_private(self.ca_key_path, "fleet CA key", "FLEET_CA_KEY")
        return key, x509.load_pem_x509_certificate(self.ca_cert_path.read_bytes())

    def move_keys(self, destination: Path, passphrase: bytes | None) -> list[Path]:
        """Write the CA and signing keys under ``destination`` (encrypted with
        ``passphrase`` when given) and delete them here; returns the new paths. The caller
        points FLEET_CA_KEY / FLEET_SIGNING_KEY at them."""
        moved = []
        for path, loader in ((self.ca_key_path, lambda: self._ca()[0]),
                             (self.signing_key_path, self._load_signing_key)):
            target = destination / path.name
            if target.resolve() == path.resolve():
                raise PkiError(f"{path} is already there", hint="pick another directory")
            write_private(target, _key_pem(loader(), passphrase))
            moved.append(target)
        for path in (self.ca_key_path, self.signing_key_path):
            path.unlink()
        return moved

    # -- issuing --------------------------------------------------------------------------
    def issue(self, name: str, client: bool = False, address: str = "", role: str = ""
              ) -> Issued:
        """A leaf certificate for ``name``: the controller's (``client``: role controller,
        client auth) or a device's (role device; server auth, and client auth for calls
        between agents, which agents allow only where they say so). ``role`` overrides the
        role (a device's peer certificate: client auth, role device)."""
        ca_key, ca_cert = self._ca()
        key = ec.generate_private_key(ec.SECP256R1())
        now = dt.datetime.now(dt.timezone.utc)
        sans: list[x509.GeneralName] = [x509.DNSName(name)]
        if address:
            try:
                sans.append(x509.IPAddress(ipaddress.ip_address(address)))
            except ValueError:
                sans.append(x509.DNSName(address))
        usage = [ExtendedKeyUsageOID.CLIENT_AUTH] if client else [
            ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
        not_after = now + dt.timedelta(days=LEAF_DAYS)
        serial = x509.random_serial_number()
        cert = (
            x509.CertificateBuilder()
            .subject_name(_name(name, role or ("controller" if client else "device")))
            .issuer_name(ca_cert.subject)
            .public_key(key.public_key()).serial_number(serial)
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(not_after)
            .add_extension(x509.SubjectAlternativeName(sans), critical=False)
            .add_extension(x509.ExtendedKeyUsage(usage), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .sign(ca_key, hashes.SHA256())
        )
        return Issued(cert.public_bytes(serialization.Encoding.PEM), _key_pem(key), serial,
                      not_after)

    def sign_crl(self, revoked: list[tuple[int, dt.datetime]]) -> tuple[int, bytes]:
        """A revocation list of ``(serial, revoked at)``, numbered one past the last one,
        written to ``crl.pem``; (number, PEM)."""
        ca_key, ca_cert = self._ca()
        number = self.crl_number() + 1
        now = dt.datetime.now(dt.timezone.utc)
        builder = (x509.CertificateRevocationListBuilder().issuer_name(ca_cert.subject)
                   .last_update(now - dt.timedelta(minutes=5))
                   .next_update(now + dt.timedelta(days=CA_DAYS))
                   .add_extension(x509.CRLNumber(number), critical=False))
        for serial, when in revoked:
            builder = builder.add_revoked_certificate(
                x509.RevokedCertificateBuilder().serial_number(serial).revocation_date(when)
                .build())
        pem = builder.sign(ca_key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)
        write_public(self.crl_path, pem)
        return number, pem

    def crl_number(self) -> int:
        if not self.crl_path.exists():
            return 0
        crl = x509.load_pem_x509_crl(self.crl_path.read_bytes())
        try:
            return int(crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number)
        except x509.ExtensionNotFound:
            return 0

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
            self._signing_key = self._load_signing_key()
        body = json.dumps(manifest, sort_keys=True, separators=(",", ":")).encode()
        return body, self._signing_key.sign(body)

    def agent_files(self, name: str, address: str) -> dict[str, bytes]:
        """What a device's agent gets at enrollment (or lab start): its certificate and key,
        the fleet CA, the manifest-signing public key, the revocation list, and its peer
        certificate: the client identity it fetches blobs from its peers with
        (agent.peer_identity), role device and client auth only, so agents admit it to the
        Peer service alone (agent.client_auth)."""
        issued = self.issue(name, address=address)
        peer = self.issue(peer_common_name(name), client=True, role="device")
        files = {"agent.crt": issued.cert_pem, "agent.key": issued.key_pem,
                 "peer.crt": peer.cert_pem, "peer.key": peer.key_pem}
        return {**files, **self.trust_files()}

    def trust_files(self) -> dict[str, bytes]:
        """What every agent holds besides its own certificate: the CA, the signing key's
        public half, the revocation list (when there is one)."""
        files = {"ca.crt": self.ca_cert_path.read_bytes(),
                 "signing.pub": self.signing_pub_path.read_bytes()}
        if self.crl_path.exists():
            files["crl.pem"] = self.crl_path.read_bytes()
        return files


def _public_pem(key: ed25519.Ed25519PrivateKey) -> bytes:
    return key.public_key().public_bytes(serialization.Encoding.PEM,
                                         serialization.PublicFormat.SubjectPublicKeyInfo)


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
