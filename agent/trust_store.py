"""The agent's trust material, read from ``--tls-dir`` and followed as it changes.

    agent.crt, agent.key   this agent's certificate (its common name is the device's name)
    ca.crt                 the fleet CA(s) whose client certificates it accepts (several
                           during a CA rotation)
    signing.pub            the controller's manifest-signing key(s) (ed25519, PEM)
    crl.pem                certificates the fleet revoked (optional; signed by a fleet CA)

Nothing here changes over the agent's gRPC API: the controller replaces these files over SSH
(``fleet pki rotate``, ``fleet device remove``) and the agent picks the new ones up without a
restart: a new certificate at the next TLS handshake (gRPC's dynamic server credentials), a
new CRL or signing key at the next request. A new file that does not check out (a key that
does not match its certificate, a CRL not signed by a fleet CA or older than the one loaded)
is refused with a log line and the old material stays in use.

Failing closed: an agent started with a TLS directory must have a signing key there
(``TrustError`` otherwise), so an agent that asks clients for certificates never accepts an
unsigned load.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
from cryptography.x509.oid import NameOID

log = logging.getLogger("edgefleet.agent")

CONTROLLER = "controller"
DEVICE = "device"
# certificates issued before roles were written into them: the controller's had this name
LEGACY_CONTROLLER_NAME = "edgefleet-controller"
_PUBLIC_KEY = b"-----BEGIN PUBLIC KEY-----"


class TrustError(ValueError):
    """The TLS directory is incomplete or inconsistent: the agent does not start."""

    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.hint = hint


@dataclass(frozen=True)
class ClientCert:
    serial: int
    name: str
    role: str  # controller | device | "" (unknown)


def signing_keys(pem: bytes) -> list[ed25519.Ed25519PublicKey]:
    """Every ed25519 public key in a PEM file (several while the signing key is rotated)."""
    keys = []
    for block in pem.split(_PUBLIC_KEY)[1:]:
        key = serialization.load_pem_public_key(_PUBLIC_KEY + block.split(b"-----END")[0]
                                                + b"-----END PUBLIC KEY-----\n")
        if not isinstance(key, ed25519.Ed25519PublicKey):
            raise ValueError("a signing key that is not ed25519")
        keys.append(key)
    return keys


def _common_name(name: x509.Name) -> str:
    found = name.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(found[0].value) if found else ""


def role_of(cert: x509.Certificate) -> str:
    unit = cert.subject.get_attributes_for_oid(NameOID.ORGANIZATIONAL_UNIT_NAME)
    if unit:
        return str(unit[0].value)
    return CONTROLLER if _common_name(cert.subject) == LEGACY_CONTROLLER_NAME else ""


def _cas(pem: bytes) -> list[x509.Certificate]:
    return x509.load_pem_x509_certificates(pem)


class _Watched:
    """A file's bytes, re-read when its (mtime_ns, size, inode) changes."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.stamp: tuple[int, int, int] | None = None

    def changed(self) -> tuple[bool, bytes | None]:
        try:
            st = self.path.stat()
        except FileNotFoundError:
            if self.stamp is None:
                return False, None
            self.stamp = None
            return True, None
        stamp = (st.st_mtime_ns, st.st_size, st.st_ino)
        if stamp == self.stamp:
            return False, None
        self.stamp = stamp
        return True, self.path.read_bytes()


class TrustStore:
    device_name: str  # this agent's certificate's common name: the device it is
    serial: int  # of the certificate it serves
    _ca_certs: list[x509.Certificate]

    def __init__(self, tls_dir: Path) -> None:
        self.dir = tls_dir
        self._lock = threading.Lock()
        missing = [n for n in ("agent.crt", "agent.key", "ca.crt") if not (tls_dir / n).is_file()]
        if missing:
            raise TrustError(f"--tls-dir {tls_dir} lacks {', '.join(missing)}",
                             hint="`fleet device enroll NAME` writes them")
        self._pair = _Watched(tls_dir / "agent.crt"), _Watched(tls_dir / "agent.key")
        self._ca = _Watched(tls_dir / "ca.crt")
        self._signing = _Watched(tls_dir / "signing.pub")
        self._crl_file = _Watched(tls_dir / "crl.pem")
        config = self._read_identity()
        if config is None:
            raise TrustError(f"the certificate, key or CA in {tls_dir} is unusable (see the "
                             "log line above)", hint="re-enroll the device: fleet device "
                             "enroll NAME")
        self._config = config
        self._keys: list[ed25519.Ed25519PublicKey] = []
        self._refresh_signing()
        if not self._keys:
            raise TrustError(
                f"no manifest-signing key in {tls_dir / 'signing.pub'}: an agent that "
                "requires client certificates must also require signed manifests",
                hint="`fleet device enroll NAME` pins the controller's key; for a test agent "
                "without TLS drop --tls-dir (loopback only)")
        self._revoked: dict[int, str] = {}
        self._crl_number = -1
        self._refresh_crl()
        self._clients: dict[bytes, ClientCert] = {}

    # -- identity (what this agent presents) ------------------------------------------------
    def _read_identity(self) -> grpc.ServerCertificateConfiguration | None:
        """Read certificate, key and CA bundle; None (logged) when they do not fit."""
        (crt, key), ca = self._pair, self._ca
        crt.changed()
        key.changed()
        ca.changed()
        try:
            cert_pem, key_pem = crt.path.read_bytes(), key.path.read_bytes()
            ca_pem = ca.path.read_bytes()
            cert = x509.load_pem_x509_certificate(cert_pem)
            private = serialization.load_pem_private_key(key_pem, None)
            cas = _cas(ca_pem)
        except (OSError, ValueError, TypeError) as exc:
            log.error("TLS material in %s unreadable: %s", self.dir, exc)
            return None
        if private.public_key().public_bytes(
                serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        ) != cert.public_key().public_bytes(serialization.Encoding.DER,
                                            serialization.PublicFormat.SubjectPublicKeyInfo):
            log.error("agent.key in %s does not belong to agent.crt; keeping the certificate "
                      "in use", self.dir)
            return None
        if not any(cert.issuer == ca_cert.subject for ca_cert in cas):
            log.error("agent.crt in %s is not issued by a CA in ca.crt; keeping the "
                      "certificate in use", self.dir)
            return None
        self.device_name = _common_name(cert.subject)
        self.serial = cert.serial_number
        self._ca_certs = cas
        return grpc.ssl_server_certificate_configuration([(key_pem, cert_pem)],
                                                         root_certificates=ca_pem)

    def _fetch(self) -> grpc.ServerCertificateConfiguration | None:
        """gRPC asks before every TLS handshake: new files -> the new configuration."""
        with self._lock:
            watched = (*self._pair, self._ca)
            if not any(_moved(w) for w in watched):
                return None
            config = self._read_identity()
            if config is None:
                return None
            log.info("TLS material in %s reloaded: serving certificate %x", self.dir,
                     self.serial)
            self._config = config
            return config

    def server_credentials(self) -> grpc.ServerCredentials:
        """Mutual TLS (clients must present a certificate of a fleet CA), following the
        files as they are replaced."""
        return grpc.dynamic_ssl_server_credentials(self._config, self._fetch,
                                                   require_client_authentication=True)

    # -- what signs manifests ---------------------------------------------------------------
    def _refresh_signing(self) -> None:
        changed, data = self._signing.changed()
        if not changed:
            return
        try:
            keys = signing_keys(data or b"")
        except ValueError as exc:
            log.error("signing.pub in %s unreadable (%s); keeping the key(s) in use",
                      self.dir, exc)
            return
        if not keys and self._keys:
            log.error("signing.pub in %s holds no key; keeping the key(s) in use", self.dir)
            return
        self._keys = keys

    def signing_keys(self) -> list[ed25519.Ed25519PublicKey]:
        with self._lock:
            self._refresh_signing()
            return list(self._keys)

    # -- who may call ------------------------------------------------------------------------
    def _refresh_crl(self) -> None:
        changed, data = self._crl_file.changed()
        if not changed:
            return
        if data is None:
            log.warning("crl.pem in %s was removed; keeping the revocations loaded", self.dir)
            return
        try:
            crl = x509.load_pem_x509_crl(data)
        except ValueError as exc:
            log.error("crl.pem in %s unreadable (%s); keeping the revocations loaded",
                      self.dir, exc)
            return
        if not any(_signed_by(crl, ca) for ca in self._ca_certs):
            log.error("crl.pem in %s is not signed by a fleet CA; ignored", self.dir)
            return
        number = _crl_number(crl)
        if number < self._crl_number:
            log.error("crl.pem in %s is number %d, older than the loaded %d; ignored",
                      self.dir, number, self._crl_number)
            return
        self._crl_number = number
        self._revoked = {r.serial_number: _reason(r) for r in crl}
        log.info("revocation list %d loaded: %d certificate(s) revoked", number,
                 len(self._revoked))

    def client(self, pem: bytes) -> ClientCert:
        """A presented client certificate: serial, name and role (cached)."""
        with self._lock:
            found = self._clients.get(pem)
            if found is None:
                cert = x509.load_pem_x509_certificate(pem)
                found = ClientCert(cert.serial_number, _common_name(cert.subject),
                                   role_of(cert))
                if len(self._clients) > 256:
                    self._clients.clear()
                self._clients[pem] = found
            return found

    def revoked(self, serial: int) -> str | None:
        """Why ``serial`` was revoked, or None."""
        with self._lock:
            self._refresh_crl()
            return self._revoked.get(serial)

    @property
    def crl_number(self) -> int:
        return self._crl_number


def _moved(watched: _Watched) -> bool:
    try:
        st = watched.path.stat()
    except FileNotFoundError:
        return False
    return (st.st_mtime_ns, st.st_size, st.st_ino) != watched.stamp


def _signed_by(crl: x509.CertificateRevocationList, ca: x509.Certificate) -> bool:
    if crl.issuer != ca.subject:
        return False
    try:
        return bool(crl.is_signature_valid(ca.public_key()))  # type: ignore[arg-type]
    except (InvalidSignature, TypeError, ValueError):
        return False


def _crl_number(crl: x509.CertificateRevocationList) -> int:
    try:
        return int(crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number)
    except x509.ExtensionNotFound:
        return 0


def _reason(revoked: Any) -> str:
    try:
        return str(revoked.extensions.get_extension_for_class(x509.CRLReason).value.reason.value)
    except x509.ExtensionNotFound:
        return "revoked"
