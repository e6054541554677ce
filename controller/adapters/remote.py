"""Run commands and write files on a device over an established SSH connection."""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from pathlib import Path

import paramiko

from controller.errors import DeviceError, Unreachable


@dataclass(frozen=True)
class Ran:
    code: int
    out: str
    err: str


class RemoteHost:
    def __init__(self, name: str, client: paramiko.SSHClient) -> None:
        self.name = name
        self.client = client

    def run(self, command: str, timeout_s: float = 120.0) -> Ran:
        try:
            _stdin, stdout, stderr = self.client.exec_command(command, timeout=timeout_s)
            out = stdout.read().decode(errors="replace")
            err = stderr.read().decode(errors="replace")
            code = stdout.channel.recv_exit_status()
        except (paramiko.SSHException, OSError) as exc:
            raise Unreachable(f"{self.name}: SSH command failed ({exc})",
                              hint="check the device's SSH connection") from exc
        return Ran(code, out, err)

    def check(self, command: str, what: str, timeout_s: float = 120.0) -> str:
        ran = self.run(command, timeout_s)
        if ran.code != 0:
            tail = (ran.err or ran.out).strip().splitlines()[-3:]
            raise DeviceError(f"{self.name}: {what} failed (exit {ran.code}): "
                              + " | ".join(tail), hint="run the command by hand on the device "
                              f"to see more: {command[:120]}")
        return ran.out

    def write(self, path: str, data: bytes, mode: int = 0o644) -> None:
        with self.client.open_sftp() as sftp:
            tmp = path + ".tmp"
            with sftp.open(tmp, "wb") as fh:
                fh.write(data)
            sftp.chmod(tmp, mode)
            sftp.posix_rename(tmp, path)

    def write_private(self, path: str, data: bytes) -> None:
        """``data`` at ``path``, created 0600 from the first byte (umask 077, noclobber on a
        fresh temporary name), then renamed over the old file."""
        tmp = f"{path}.tmp"
        command = (f"umask 077 && rm -f {q(tmp)} && set -C && cat > {q(tmp)} && "
                   f"mv -f {q(tmp)} {q(path)}")
        try:
            stdin, stdout, stderr = self.client.exec_command(command, timeout=60)
            stdin.write(data)
            stdin.channel.shutdown_write()
            code = stdout.channel.recv_exit_status()
            err = stderr.read().decode(errors="replace").strip()
        except (paramiko.SSHException, OSError) as exc:
            raise Unreachable(f"{self.name}: SSH command failed ({exc})",
                              hint="check the device's SSH connection") from exc
        if code != 0:
            raise DeviceError(f"{self.name}: writing {path} failed (exit {code}): {err[-200:]}",
                              hint="check the directory exists and the SSH user may write it")

    def put(self, local: Path, path: str) -> None:
        with self.client.open_sftp() as sftp:
            sftp.put(str(local), path + ".tmp")
            sftp.posix_rename(path + ".tmp", path)

    def home(self) -> str:
        return self.check("printf %s \"$HOME\"", "reading $HOME").strip()


def q(value: str) -> str:
    return shlex.quote(value)
