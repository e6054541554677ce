"""What a reader costs by itself: the same client against a server that does no work.

``RawSseServer`` answers a streamed ``/v1/completions`` (HTTP/1.1, keep-alive, chunked) after
holding the request for a fixed time, as a prefill would, with the chunks an OpenAI reader
expects and ``timings.ttft_ms`` set to the time it held the request, from the request's last
byte read to the first chunk's write. A reader's "path outside the runtime" against it
(``Sample.outside_ms``: its TTFT less ``ttft_ms``) is then the client's own cost (building and
sending the request, surfacing the first chunk) plus loopback and a few microseconds of this
server: the part of the agent path's figure that no agent can remove.
"""

from __future__ import annotations

import contextlib
import json
import multiprocessing as mp
import socket
import threading
import time
from collections.abc import Callable, Iterator
from types import TracebackType
from typing import Any

from _agent_bench import PROMPT, Reader

HEAD = (b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream; charset=utf-8\r\n"
        b"cache-control: no-cache\r\ntransfer-encoding: chunked\r\n\r\n")


def _chunk(events: list[dict[str, object] | str]) -> bytes:
    body = b"".join(b"data: " + (e if isinstance(e, str) else json.dumps(e)).encode() + b"\n\n"
                    for e in events)
    return b"%x\r\n%s\r\n" % (len(body), body)


def _completion(text: str, finish: str | None = None) -> dict[str, object]:
    return {"id": "cmpl-raw", "object": "text_completion", "created": 0, "model": "raw",
            "choices": [{"index": 0, "text": text, "logprobs": None, "finish_reason": finish}]}


class RawSseServer:
    def __init__(self, hold_s: float) -> None:
        self.hold_s = hold_s
        self._sock = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._sock.getsockname()[1]
        self._closed = False

    def __enter__(self) -> RawSseServer:
        threading.Thread(target=self._accept, daemon=True).start()
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._closed = True
        with contextlib.suppress(OSError):
            self._sock.shutdown(socket.SHUT_RDWR)  # wakes the thread blocked in accept()
        self._sock.close()

    def _accept(self) -> None:
        while not self._closed:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        buf = b""
        with conn:
            while True:
                while b"\r\n\r\n" not in buf:
                    data = conn.recv(65536)
                    if not data:
                        return
                    buf += data
                head, _, buf = buf.partition(b"\r\n\r\n")
                length = next((int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                               if line.lower().startswith(b"content-length:")), 0)
                while len(buf) < length:
                    data = conn.recv(65536)
                    if not data:
                        return
                    buf += data
                buf = buf[length:]
                self._answer(conn, time.perf_counter())

    def _answer(self, conn: socket.socket, read_at: float) -> None:
        time.sleep(self.hold_s)
        held_ms = (time.perf_counter() - read_at) * 1000
        conn.sendall(HEAD + _chunk([_completion("Hello")]))
        time.sleep(0.001)
        done = {**_completion(" there", "length"), "timings": {"ttft_ms": held_ms}}
        usage = {**_completion(""), "choices": [],
                 "usage": {"prompt_tokens": 4, "completion_tokens": 2, "total_tokens": 6}}
        conn.sendall(_chunk([done, usage, "[DONE]"]) + b"0\r\n\r\n")


def _serve(conn: Any, hold_s: float) -> None:
    with RawSseServer(hold_s) as server:
        conn.send(server.port)
        conn.recv()  # until the reader is done


@contextlib.contextmanager
def raw_server(hold_s: float) -> Iterator[int]:
    """A ``RawSseServer`` in a process of its own, as the agent is (in the reader's process
    its threads would take the reader's GIL); yields its port."""
    ctx = mp.get_context("spawn")
    parent, child = ctx.Pipe()
    proc = ctx.Process(target=_serve, args=(child, hold_s), daemon=True)
    proc.start()
    child.close()
    try:
        yield int(parent.recv())
    finally:
        with contextlib.suppress(OSError):
            parent.send(None)
        proc.join(timeout=10)
        if proc.is_alive():
            proc.kill()
            proc.join()


def reader_cost(make_reader: Callable[[int], Reader], hold_s: float = 0.2,
                requests: int = 20) -> list[float]:
    """Each request's path outside the "runtime" for the reader ``make_reader(port)`` makes,
    against a ``RawSseServer`` holding each request ``hold_s`` (after one warm-up)."""
    with raw_server(hold_s) as port:
        read = make_reader(port)
        read(2, PROMPT)
        return [read(2, PROMPT).outside_ms for _ in range(requests)]
