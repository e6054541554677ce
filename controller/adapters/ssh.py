"""ParamikoTransfer: SSH connections with strict host keys, and verified SFTP pushes.

Host keys are checked against the project's own known_hosts (``settings.known_hosts_path``).
An unknown host and a changed key are refused, each with the command that fixes it; a key is
recorded only by the explicit trust-on-first-use of ``fleet device trust`` / ``--accept-new``,
and a changed key never.
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

from controller import failpoints
from controller.adapters.sftp_limits import write_size
from controller.adapters.sftp_writer import AckedWriter, StallWatch, WriteRefused, refusal_error
from controller.adapters.ssh_parallel import LINK_ERRORS
from controller.errors import (
    DeviceError,
    HostKeyMismatch,
    HostKeyUnknown,
    TransferInterrupted,
    Unreachable,
)

CHUNK = 1 << 20
# What we offer, best first: AEAD ciphers (no separate MAC pass through Python, and faster on the
# device's sshd too), then CTR with encrypt-then-MAC SHA-2. paramiko's CBC, 3DES, SHA-1 and MD5
# are not offered; every OpenSSH since 6.2 (2013) has what is left.
CIPHERS = ("aes128-gcm@openssh.com", "aes256-gcm@openssh.com", "aes128-ctr", "aes192-ctr",
           "aes256-ctr")
MACS = ("hmac-sha2-256-etm@openssh.com", "hmac-sha2-512-etm@openssh.com", "hmac-sha2-256",
        "hmac-sha2-512")


@dataclass(frozen=True)
class SshTarget:
    name: str
    host: str
    port: int
    user: str
    key_path: str
    proxy_jump: str = ""  # [user@]host[:port]; "" = from ~/.ssh/config, "none" = never


@dataclass(frozen=True)
class Resolved:
    """A target after ~/.ssh/config: what to dial, as whom, with which key, through what."""

    hostname: str
    port: int
    user: str
    key_files: tuple[str, ...]
    proxy_jump: str


def parse_jump(spec: str) -> tuple[str, str, int | None]:
    """``[user@]host[:port]`` -> (user, host, port)."""
    user, _, rest = spec.rpartition("@")
    host, sep, port = rest.rpartition(":") if rest.count(":") == 1 else (rest, "", "")
    if not sep:
        host = rest
    return user, host, int(port) if port.isdigit() else None


def load_ssh_config(path: Path | None) -> paramiko.SSHConfig:
    if path is not None and path.is_file():
        return paramiko.SSHConfig.from_path(str(path))
    return paramiko.SSHConfig()


def _host_entry(host: str, port: int) -> str:
    return host if port == 22 else f"[{host}]:{port}"


class _AcceptNewHost(paramiko.MissingHostKeyPolicy):
    """Explicit trust on first use (``--accept-new``): record an unknown key, never a
    changed one (paramiko raises BadHostKeyException for those before asking a policy)."""

    def __init__(self, known_hosts: Path, port: int) -> None:
        self.known_hosts = known_hosts
        self.port = port
        self.accepted: list[str] = []

    def missing_host_key(self, client: Any, hostname: str, key: Any) -> None:
        # paramiko already passes "[host]:port" for ports other than 22
        entry = hostname if hostname.startswith("[") else _host_entry(hostname, self.port)
        self.known_hosts.parent.mkdir(parents=True, exist_ok=True)
        with self.known_hosts.open("a") as fh:
            fh.write(f"{entry} {key.get_name()} {key.get_base64()}\n")
        self.accepted.append(f"{entry} {key.get_name()} SHA256:{_fingerprint(key)}")


def _fingerprint(key: Any) -> str:
    import base64

    return base64.b64encode(hashlib.sha256(key.asbytes()).digest()).decode().rstrip("=")


class _RefuseUnknownHost(paramiko.MissingHostKeyPolicy):
    def __init__(self, target: SshTarget, known_hosts: Path) -> None:
        self.target = target
        self.known_hosts = known_hosts

    def missing_host_key(self, client: Any, hostname: str, key: Any) -> None:
        t = self.target
        detail = f"host key of {_host_entry(t.host, t.port)} is not in {self.known_hosts}"
        raise HostKeyUnknown(
            f"{t.name}: {detail}", detail=detail,
            hint=f"verify the device, then trust it once: fleet device trust {t.name} "
            f"(or ssh-keyscan -p {t.port} {t.host} >> {self.known_hosts})",
        )


class ParamikoTransfer:
    def __init__(self, known_hosts: Path, timeout_s: float = 10.0,
                 ssh_config: Path | None = None, accept_new: bool = False,
                 stall_timeout_s: float = 30.0) -> None:
        self.known_hosts = known_hosts
        self.timeout_s = timeout_s
        # A link that goes silent mid-transfer (Wi-Fi drop, unplugged cable) sends no RST:
        # without a timeout the upload would wait forever. After this many seconds without
        # progress it is interrupted, and the retry resumes.
        self.stall_timeout_s = stall_timeout_s
        self.config = load_ssh_config(ssh_config)
        self.accept_new = accept_new
        self.accepted: list[str] = []  # keys trusted on first use during this run

    def resolve(self, target: SshTarget) -> Resolved:
        """Apply ~/.ssh/config (HostName, User, Port, IdentityFile, ProxyJump); values set on
        the device win over the config's."""
        found = self.config.lookup(target.host)
        port = target.port if target.port != 22 else int(found.get("port", 22))
        keys = (target.key_path,) if target.key_path else tuple(found.get("identityfile", []))
        jump = target.proxy_jump or found.get("proxyjump", "")
        return Resolved(found.get("hostname", target.host), port,
                        target.user or found.get("user", ""), keys,
                        "" if jump == "none" else jump)

    def connect(self, target: SshTarget) -> paramiko.SSHClient:
        """Connect with strict host keys, through the target's ProxyJump chain if any."""
        resolved = self.resolve(target)
        sock = None
        jump_client = None
        if resolved.proxy_jump:
            first, _, rest = resolved.proxy_jump.partition(",")
            user, host, port = parse_jump(first)
            jump = SshTarget(f"{target.name} (jump {host})", host, port or 22, user, "",
                             rest or "none")
            jump_client = self.connect(jump)
            transport = jump_client.get_transport()
            assert transport is not None
            try:
                sock = transport.open_channel("direct-tcpip",
                                              (resolved.hostname, resolved.port),
                                              ("127.0.0.1", 0), timeout=self.timeout_s)
            except (paramiko.SSHException, OSError) as exc:
                jump_client.close()
                raise Unreachable(
                    f"{target.name}: jump host {host} cannot reach "
                    f"{resolved.hostname}:{resolved.port} ({exc})",
                    hint="check the device address as seen from the bastion") from exc
        client = self._connect_direct(target, resolved, sock)
        if jump_client is not None:
            client._edgefleet_jump = jump_client  # type: ignore[attr-defined]  # keep it open
        return client

    def _connect_direct(self, target: SshTarget, resolved: Resolved,
                        sock: Any) -> paramiko.SSHClient:
        client = paramiko.SSHClient()
        if self.known_hosts.exists():
            client.load_host_keys(str(self.known_hosts))
        # The key is checked for the name the device is known by (what known_hosts lists).
        shown = SshTarget(target.name, resolved.hostname, resolved.port, resolved.user, "")
        policy: paramiko.MissingHostKeyPolicy
        if self.accept_new:
            policy = _AcceptNewHost(self.known_hosts, resolved.port)
        else:
            policy = _RefuseUnknownHost(shown, self.known_hosts)
        client.set_missing_host_key_policy(policy)
        try:
            self._dial(client, target, resolved, sock)
        finally:
            if isinstance(policy, _AcceptNewHost):
                self.accepted.extend(policy.accepted)
        return client

    def _dial(self, client: paramiko.SSHClient, target: SshTarget, resolved: Resolved,
              sock: Any) -> None:
        """Connect; map paramiko and socket errors to ours (the one choke point)."""
        try:
            client.connect(
                resolved.hostname,
                port=resolved.port,
                username=resolved.user or None,
                key_filename=list(resolved.key_files) or None,  # type: ignore[arg-type]
                look_for_keys=not resolved.key_files,
                allow_agent=not resolved.key_files,
                timeout=self.timeout_s,
                banner_timeout=self.timeout_s,
                auth_timeout=self.timeout_s,
                sock=sock,
                transport_factory=_hardened_transport,
            )
        except (HostKeyUnknown, HostKeyMismatch):
            client.close()
            raise
        except paramiko.BadHostKeyException as exc:
            client.close()
            entry = _host_entry(resolved.hostname, resolved.port)
            detail = (f"host key of {entry} CHANGED; refusing to connect (possible "
                      "man-in-the-middle)")
            raise HostKeyMismatch(
                f"{target.name}: {detail}",
                hint=f"if the device was re-imaged on purpose: ssh-keygen -f {self.known_hosts} "
                f"-R '{entry}', then re-add its key", detail=detail,
            ) from exc
        except paramiko.AuthenticationException as exc:
            client.close()
            detail = f"SSH authentication failed for {target.user!r}"
            raise DeviceError(f"{target.name}: {detail}",
                              hint="check --user and --key of the device", detail=detail) from exc
        except (TimeoutError, OSError, paramiko.SSHException) as exc:
            client.close()
            detail = f"cannot reach SSH at {resolved.hostname}:{resolved.port} ({exc})"
            raise Unreachable(
                f"{target.name}: {detail}",
                hint="is the device on and sshd running? `fleet device list` shows its address",
                detail=detail) from exc

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
        (the caller checked their hash) and the upload continues after them. Every write's
        reply is read (``AckedWriter``); returns the bytes the device acknowledged in this
        call. Raises ``TransferInterrupted`` (with the acknowledged bytes) when the link drops
        or stalls for ``stall_timeout_s``, ``UploadRefused`` when the device refuses a write.
        The receiving agent hashes the whole file before using it.
        """
        total = local.stat().st_size
        part = posixpath.join(remote_dir, name + ".part")
        final = posixpath.join(remote_dir, name)
        writer: AckedWriter | None = None
        started = time.monotonic()

        def acked() -> int:
            return (writer.acked if writer else resume_from) - resume_from

        with StallWatch(client.get_transport(), self.stall_timeout_s) as watch:
            try:
                with client.open_sftp() as sftp:
                    channel = sftp.get_channel()
                    if channel is not None:
                        channel.settimeout(self.stall_timeout_s)
                    writer = AckedWriter(sftp, part, "r+b" if resume_from else "wb",
                                         write_size(sftp), resume_from, watch)
                    try:
                        with local.open("rb") as src:
                            src.seek(resume_from)
                            while block := src.read(CHUNK):
                                writer.write(block)
                                if progress:
                                    progress(writer.acked, total)
                                if writer.acked * 2 >= total:  # the device holds half of it
                                    failpoints.hit("upload.half")
                                if limit_bytes_per_s:
                                    ahead = (writer.position - resume_from) / limit_bytes_per_s \
                                        - (time.monotonic() - started)
                                    if ahead > 0:
                                        writer.drain()  # nothing left waiting while we pause
                                        time.sleep(ahead)
                        writer.close()
                    except WriteRefused as exc:
                        writer.abandon()
                        raise refusal_error(sftp, exc, remote_dir, total, [part],
                                            acked()) from exc
                    if progress:
                        progress(total, total)
                    sftp.posix_rename(part, final)
            except LINK_ERRORS as exc:
                raise TransferInterrupted(
                    f"upload interrupted after {resume_from + acked()} of {total} bytes "
                    f"acknowledged by the device ({watch.describe(exc)})",
                    hint="re-run the deploy: it resumes where it stopped",
                    sent=acked()) from exc
        return total - resume_from


def _hardened_transport(sock: Any, **kwargs: Any) -> paramiko.Transport:
    transport = paramiko.Transport(sock, **kwargs)
    options = transport.get_security_options()
    options.ciphers = CIPHERS
    options.digests = MACS
    return transport


def sha256_prefix(path: Path, length: int) -> str:
    """sha256 of the first ``length`` bytes of ``path``."""
    digest = hashlib.sha256()
    left = length
    with path.open("rb") as fh:
        while left > 0 and (block := fh.read(min(CHUNK, left))):
            digest.update(block)
            left -= len(block)
    return str(digest.hexdigest())
