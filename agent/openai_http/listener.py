"""Where the OpenAI endpoint listens, and the server thread that serves it.

The endpoint has no certificates and no authentication: it is for apps on the device only, so
its address must be a unix socket or loopback (``agent.local_address``); never the management
port. uvicorn runs in a thread of the agent with its own event loop. Without the ``openai``
extra (Starlette, uvicorn) the address is still bound and every request gets a 503 in the
OpenAI error shape naming the missing extra.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from agent.core import AgentCore
from agent.local_address import ListenError, bind_local, parse_address

log = logging.getLogger("edgefleet.agent.openai")

START_TIMEOUT_S = 15.0
EXTRA_HINT = "install the agent's openai extra: pip install 'edgefleet[openai]'"


class OpenAIListener:
    """The endpoint's server thread. ``url`` is where it listens (the bound port for :0)."""

    def __init__(self, core: AgentCore, address: str, stream_interval_s: float) -> None:
        self.address = parse_address(address)
        self._sock = bind_local(self.address)
        bound = 0 if self.address.unix_path else int(self._sock.getsockname()[1])
        self.url = self.address.url(bound)
        self.available = True
        self._thread: threading.Thread | None = None
        try:
            self._server: Any = self._uvicorn(core, stream_interval_s)
        except ImportError as exc:
            log.error("OpenAI endpoint unavailable on %s: %s (%s); answering 503",
                      self.url, exc, EXTRA_HINT)
            self.available = False
            self._server = _unavailable_server(self._sock, str(exc))

    def _uvicorn(self, core: AgentCore, stream_interval_s: float) -> Any:
        import uvicorn

        from agent.openai_http.app import OpenAIEndpoint

        self._endpoint = OpenAIEndpoint(core, stream_interval_s)
        config = uvicorn.Config(self._endpoint.app(), lifespan="off", log_level="warning",
                                access_log=False, timeout_graceful_shutdown=2,
                                timeout_keep_alive=30)
        return uvicorn.Server(config)

    def start(self) -> None:
        if not self.available:
            self._thread = threading.Thread(target=self._server.serve_forever,
                                             name="openai-unavailable", daemon=True)
            self._thread.start()
            return
        self._thread = threading.Thread(target=self._server.run, args=([self._sock],),
                                        name="openai-http", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + START_TIMEOUT_S
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise ListenError(f"the OpenAI endpoint did not start on {self.url}")
            time.sleep(0.01)
        log.info("OpenAI-compatible endpoint on %s", self.url)

    def stop(self) -> None:
        if self.available:
            self._server.should_exit = True
        else:
            self._server.shutdown()
        if self._thread is not None:
            self._thread.join(timeout=10)
        if self.available:
            self._endpoint.executor.shutdown(wait=False, cancel_futures=True)
        self._sock.close()
        if self.address.unix_path:
            with contextlib.suppress(OSError):
                os.unlink(self.address.unix_path)


def _unavailable_server(sock: socket.socket, reason: str) -> ThreadingHTTPServer:
    body = json.dumps({"error": {
        "message": f"the OpenAI-compatible endpoint is not available on this agent: {reason}; "
                   f"{EXTRA_HINT}",
        "type": "server_error", "param": None, "code": "endpoint_unavailable"}}).encode()

    class Unavailable(BaseHTTPRequestHandler):
        def _answer(self) -> None:
            self.send_response(503)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_GET = do_POST = do_PUT = do_DELETE = _answer  # noqa: N815

        def log_message(self, format: str, *args: Any) -> None:
            pass  # the agent logged the reason once at start

    server = ThreadingHTTPServer(("127.0.0.1", 0), Unavailable, bind_and_activate=False)
    server.socket.close()
    server.socket = sock
    server.daemon_threads = True
    return server
