"""SshTunnel: a local port forwarded through an SSH connection (like ``ssh -L``), so the gRPC
client reaches an agent that only a bastion can see."""

from __future__ import annotations

import contextlib
import select
import socket
import threading
from typing import Any

import paramiko


class SshTunnel:
    def __init__(self, client: paramiko.SSHClient, remote: tuple[str, int]) -> None:
        transport = client.get_transport()
        if transport is None:
            raise OSError("SSH connection is closed")
        self._transport: paramiko.Transport = transport
        self._remote = remote
        self._server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._server.bind(("127.0.0.1", 0))
        self._server.listen(8)
        self.port = int(self._server.getsockname()[1])
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True, name="ssh-tunnel")
        self._thread.start()

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                conn, peer = self._server.accept()
            except OSError:
                return
            threading.Thread(target=self._pump, args=(conn, peer), daemon=True).start()

    def _pump(self, conn: socket.socket, peer: Any) -> None:
        try:
            chan = self._transport.open_channel("direct-tcpip", self._remote, peer)
        except (paramiko.SSHException, OSError):
            conn.close()
            return
        try:
            watch: list[Any] = [conn, chan]
            while not self._closed.is_set():
                ready, _, _ = select.select(watch, [], [], 0.5)
                if conn in ready:
                    data = conn.recv(65536)
                    if not data:
                        break
                    chan.sendall(data)
                if chan in ready:
                    data = chan.recv(65536)
                    if not data:
                        break
                    conn.sendall(data)
        except OSError:
            pass
        finally:
            chan.close()
            conn.close()

    def close(self) -> None:
        self._closed.set()
        with contextlib.suppress(OSError):
            self._server.close()
