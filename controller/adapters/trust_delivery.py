"""Trust material delivered to an agent's TLS directory over SSH, the path enrollment used.

The agent's API cannot change what it trusts: certificates, the CA, the signing key and the
revocation list reach it only as files written over SSH (host key pinned in the fleet's
known_hosts), and the agent picks them up by itself (agent.trust_store). Private keys are
created 0600 from the first byte; every file is written under a temporary name and renamed.
"""

from __future__ import annotations

import posixpath

from controller.adapters.remote import RemoteHost
from controller.adapters.ssh import ParamikoTransfer, SshTarget
from controller.adapters.tables import Device

PRIVATE = frozenset({"agent.key", "peer.key"})  # and any other *.key
# a key first: the agent refuses a certificate whose key is not there yet, and keeps the old
# pair until both match
ORDER = ("agent.key", "agent.crt", "peer.key", "peer.crt", "ca.crt", "signing.pub", "crl.pem")


def tls_dir_of(device: Device) -> str:
    """The agent's ``--tls-dir``: ``tls/`` beside its data directory ("" when the device
    was never enrolled)."""
    if not device.tls or not device.data_dir:
        return ""
    return posixpath.join(posixpath.dirname(device.data_dir.rstrip("/")), "tls")


class SshTrustDelivery:
    def __init__(self, transfer: ParamikoTransfer) -> None:
        self.transfer = transfer

    def deliver(self, device: Device, target: SshTarget, files: dict[str, bytes]) -> None:
        """Write ``files`` into the device's TLS directory. Raises DeviceError/Unreachable."""
        directory = tls_dir_of(device)
        ssh = self.transfer.connect(target)
        try:
            remote = RemoteHost(device.name, ssh)
            for name in sorted(files, key=lambda n: ORDER.index(n) if n in ORDER else 99):
                path = posixpath.join(directory, name)
                if name in PRIVATE or name.endswith(".key"):
                    remote.write_private(path, files[name])
                else:
                    remote.write(path, files[name], 0o644)
        finally:
            ssh.close()
