"""ParamikoTransfer: SSH connections with strict host keys, and verified SFTP pushes.

Host keys are checked against the project's own known_hosts (``settings.known_hosts_path``).
An unknown host and a changed key are refused, each with the command that fixes it; nothing
is ever added silently (no AutoAddPolicy).
"""

from __future__ import annotations

import hashlib
import posixpath
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paramiko

from controller.errors import (
    DeviceError,
    HostKeyMismatch,
    HostKeyUnknown,
    TransferInterrupted,
    Unreachable,
)

CHUNK = 1 << 20


@dataclass(frozen=True)
class SshTarget:
    name: str
    host: str
    port: int
    user: str
    key_path: str


def _host_entry(host: str, port: int) -> str:
    return host if port == 22 else f"[{host}]:{port}"


class _RefuseUnknownHost(paramiko.MissingHostKeyPolicy):
    def __init__(self, target: SshTarget, known_hosts: Path) -> None:
        self.target = target
        self.known_hosts = known_hosts

    def missing_host_key(self, client: Any, hostname: str, key: Any) -> None:
        t = self.target
        raise HostKeyUnknown(
            f"{t.name}: host key of {_host_entry(t.host, t.port)} is not in {self.known_hosts}",
            hint=f"verify the device, then add it: ssh-keyscan -p {t.port} {t.host} >> "
            f"{self.known_hosts}",
        )


class ParamikoTransfer:
    def __init__(self, known_hosts: Path, timeout_s: float = 10.0) -> None:
        self.known_hosts = known_hosts
        self.timeout_s = timeout_s

    def connect(self, target: SshTarget) -> paramiko.SSHClient:
        client = paramiko.SSHClient()
        if self.known_hosts.exists():
            client.load_host_keys(str(self.known_hosts))
        client.set_missing_host_key_policy(_RefuseUnknownHost(target, self.known_hosts))
        try:
            client.connect(
                target.host,
                port=target.port,
                username=target.user or None,
                key_filename=target.key_path or None,
                look_for_keys=not target.key_path,
                allow_agent=not target.key_path,
                timeout=self.timeout_s,
                banner_timeout=self.timeout_s,
                auth_timeout=self.timeout_s,
            )
        except (HostKeyUnknown, HostKeyMismatch):
            client.close()
            raise
        except paramiko.BadHostKeyException as exc:
            client.close()
            raise HostKeyMismatch(
                f"{target.name}: host key of {_host_entry(target.host, target.port)} CHANGED; "
                "refusing to connect (possible man-in-the-middle)",
                hint=f"if the device was re-imaged on purpose: ssh-keygen -f {self.known_hosts} "
                f"-R '{_host_entry(target.host, target.port)}', then re-add its key",
            ) from exc
        except paramiko.AuthenticationException as exc:
            client.close()
            raise DeviceError(f"{target.name}: SSH authentication failed for {target.user!r}",
                              hint="check --user and --key of the device") from exc
        except (TimeoutError, OSError, paramiko.SSHException) as exc:
            client.close()
            raise Unreachable(
                f"{target.name}: cannot reach SSH at {target.host}:{target.port} ({exc})",
                hint="is the device on and sshd running? `fleet device list` shows its address",
            ) from exc
        return client

    def push(
        self,
        client: paramiko.SSHClient,
        local: Path,
        remote_dir: str,
        name: str,
        resume_from: int = 0,
        progress: Callable[[int, int], None] | None = None,
        limit_bytes_per_s: float = 0.0,
    ) -> int:
        """Upload ``local`` to ``remote_dir/name`` via ``name.part`` and an atomic rename.

        With ``resume_from`` > 0 the remote ``.part`` already holds that many verified bytes
        (the caller checked their hash) and the upload continues after them. Returns the
        bytes sent by this call. The receiving agent hashes the whole file before using it.
        """
        total = local.stat().st_size
        part = posixpath.join(remote_dir, name + ".part")
        final = posixpath.join(remote_dir, name)
        sent = 0
        started = time.monotonic()
        try:
            with client.open_sftp() as sftp:
                mode = "r+b" if resume_from else "wb"
                with local.open("rb") as src, sftp.open(part, mode) as dst:
                    dst.set_pipelined(True)
                    if resume_from:
                        src.seek(resume_from)
                        dst.seek(resume_from)
                    while block := src.read(CHUNK):
                        dst.write(block)
                        sent += len(block)
                        if progress:
                            progress(resume_from + sent, total)
                        if limit_bytes_per_s:
                            ahead = sent / limit_bytes_per_s - (time.monotonic() - started)
                            if ahead > 0:
                                time.sleep(ahead)
                sftp.posix_rename(part, final)
        except (OSError, paramiko.SSHException, EOFError) as exc:
            raise TransferInterrupted(
                f"upload to {remote_dir} interrupted after {resume_from + sent} of {total} "
                f"bytes ({exc})", hint="re-run the deploy: it resumes where it stopped",
                sent=sent) from exc
        return sent


def sha256_prefix(path: Path, length: int) -> str:
    """sha256 of the first ``length`` bytes of ``path``."""
    digest = hashlib.sha256()
    left = length
    with path.open("rb") as fh:
        while left > 0 and (block := fh.read(min(CHUNK, left))):
            digest.update(block)
            left -= len(block)
    return str(digest.hexdigest())
