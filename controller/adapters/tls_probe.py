"""Which certificate an agent serves right now, read from a TLS handshake of our own.

gRPC's Python client does not show the server's certificate, so after a rotation (and for
``fleet pki status --live``) the controller shakes hands once with the standard library's
``ssl``: the fleet CA verifies the agent's certificate, the device's name must match it, the
controller's client certificate is presented (the agent requires one), and the certificate
that came back is returned. Nothing is sent over the connection.
"""

from __future__ import annotations

import contextlib
import os
import socket
import ssl
import tempfile
from pathlib import Path

from controller.adapters.pki import CertInfo, cert_info
from controller.errors import Unreachable


def served_certificate(name: str, address: str, tls: tuple[bytes, bytes, bytes],
                       timeout_s: float = 5.0) -> CertInfo:
    """The certificate the agent at ``address`` (host:port) serves as ``name``. Raises
    Unreachable when it cannot be reached or its certificate does not verify."""
    ca, key, cert = tls
    host, _, port = address.rpartition(":")
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cadata=ca.decode())
    context.set_alpn_protocols(["h2"])
    with tempfile.TemporaryDirectory(prefix="edgefleet-probe-") as tmp:
        key_path, cert_path = Path(tmp) / "k.pem", Path(tmp) / "c.pem"
        fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(key)
        cert_path.write_bytes(cert)
        context.load_cert_chain(str(cert_path), str(key_path))
    try:
        with contextlib.closing(socket.create_connection((host.strip("[]"), int(port)),
                                                         timeout=timeout_s)) as raw, \
                context.wrap_socket(raw, server_hostname=name) as tls_sock:
            der = tls_sock.getpeercert(binary_form=True)
    except (OSError, ssl.SSLError, ValueError) as exc:
        raise Unreachable(f"{name}: TLS handshake with {address} failed ({exc})",
                          hint="is the agent running, and does it serve a certificate of the "
                          "fleet CA for this name?",
                          detail=f"TLS handshake with {address} failed ({exc})") from exc
    if not der:
        raise Unreachable(f"{name}: {address} presented no certificate")
    return cert_info(ssl.DER_cert_to_PEM_cert(der).encode())
