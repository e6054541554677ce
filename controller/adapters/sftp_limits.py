"""How large one SFTP write may be: asked of the server, never assumed.

paramiko writes 32 KiB requests, the size every SFTP server must accept. OpenSSH's sftp-server
takes up to 255 KiB and says so through its ``limits@openssh.com`` extension (OpenSSH >= 8.6),
which its own ``sftp`` and ``scp`` use too. One request per 255 KiB instead of per 32 KiB means
eight times fewer requests and acknowledgements through paramiko's Python packet loop, the
bottleneck of a paramiko upload (bench/transfer.py measures it). A server that does not answer
the extension keeps the 32 KiB requests.
"""

from __future__ import annotations

import paramiko
from paramiko.sftp import CMD_EXTENDED, CMD_EXTENDED_REPLY

SAFE_WRITE = 32 * 1024  # every server accepts this (draft-ietf-secsh-filexfer-02)
MAX_WRITE = 261_120  # OpenSSH's own maximum (256 KiB message less its header room)


def write_size(sftp: paramiko.SFTPClient) -> int:
    """The largest write request the server says it takes, within [SAFE_WRITE, MAX_WRITE]."""
    try:
        # paramiko has no public call for an extended request; posix_rename uses this one
        kind, msg = sftp._request(  # type: ignore[attr-defined]
            CMD_EXTENDED, "limits@openssh.com")
    except (OSError, paramiko.SFTPError):  # OP_UNSUPPORTED: a server without the extension
        return SAFE_WRITE
    if kind != CMD_EXTENDED_REPLY or msg is None:
        return SAFE_WRITE
    msg.get_int64()  # max packet length
    msg.get_int64()  # max read length
    announced = msg.get_int64()  # max write length; 0 = no limit
    return max(SAFE_WRITE, min(announced or MAX_WRITE, MAX_WRITE))

