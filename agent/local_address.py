"""Local addresses: where the agent serves apps on the device without certificates.

Such a listener has no authentication, so its address must be a unix socket path or resolve
to loopback addresses only, checked with ``ipaddress`` after name resolution (a string prefix
such as "127." would let ``127.example.com`` through, and ``localhost`` can point elsewhere in
/etc/hosts).
"""

from __future__ import annotations

import contextlib
import errno
import ipaddress
import socket
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any


class ListenError(ValueError):
    """The address is not local, not free, or not parseable."""


@dataclass(frozen=True)
class LocalAddress:
    unix_path: str = ""
    host: str = ""
    port: int = 0

    def url(self, bound_port: int = 0) -> str:
        if self.unix_path:
            return f"unix://{self.unix_path}"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{bound_port or self.port}"


def parse_address(address: str) -> LocalAddress:
    """``unix:///run/x.sock``, ``unix:/run/x.sock``, ``127.0.0.1:8080``, ``[::1]:8080``,
    ``localhost:8080``. Raises ListenError."""
    if address.startswith("unix:"):
        path = address[len("unix:"):]
        path = path[2:] if path.startswith("//") else path
        if not path.startswith("/"):
            raise ListenError(f"{address}: a unix socket needs an absolute path "
                              "(unix:///run/edgefleet/openai.sock)")
        return LocalAddress(unix_path=path)
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit() or not host:
        raise ListenError(f"{address}: expected HOST:PORT or unix:///PATH")
    return LocalAddress(host=host.strip("[]"), port=int(port))


def resolve_loopback(address: LocalAddress) -> list[Any]:
    """``getaddrinfo`` of a TCP address, refused unless every result is loopback (so a name
    that /etc/hosts or DNS points elsewhere is caught). Raises ListenError."""
    try:
        infos = socket.getaddrinfo(address.host, address.port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise ListenError(f"cannot resolve {address.host!r}: {exc}") from None
    ips = {str(info[4][0]) for info in infos}
    remote = sorted(ip for ip in ips if not ipaddress.ip_address(ip.split("%")[0]).is_loopback)
    if remote:
        raise ListenError(f"{address.host} resolves to {', '.join(remote)}, not loopback: "
                          "this listener has no authentication and is for apps on the "
                          "device only")
    return infos


def is_local(address: str) -> bool:
    """A gRPC-style address (``unix:...`` or ``HOST:PORT``) only this device can reach."""
    if address.startswith("unix:"):
        return True
    try:
        resolve_loopback(parse_address(address))
    except ListenError:
        return False
    return True


def bind_local(address: LocalAddress) -> socket.socket:
    """A listening socket on a loopback address or a unix socket. Raises ListenError."""
    if address.unix_path:
        return _bind_unix(Path(address.unix_path))
    family, kind, proto, _, sockaddr = resolve_loopback(address)[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(sockaddr)
        sock.listen(128)
    except OSError as exc:
        sock.close()
        raise ListenError(f"cannot listen on {address.url()}: {exc.strerror}") from None
    return sock


def _bind_unix(path: Path) -> socket.socket:
    with contextlib.suppress(FileNotFoundError):
        if not stat.S_ISSOCK(path.lstat().st_mode):
            raise ListenError(f"{path} exists and is not a socket; not touching it")
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            probe.connect(str(path))
            raise ListenError(f"{path} is in use by another process")
        except OSError as exc:
            if exc.errno not in (errno.ECONNREFUSED, errno.ENOENT):
                raise ListenError(f"{path}: {exc.strerror}") from None
            path.unlink(missing_ok=True)  # left behind by an agent that died
        finally:
            probe.close()
    path.parent.mkdir(parents=True, exist_ok=True)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind(str(path))
        sock.listen(128)
    except OSError as exc:
        sock.close()
        raise ListenError(f"cannot listen on unix://{path}: {exc.strerror}") from None
    return sock
