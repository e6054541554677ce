"""A generation runs in a thread (the agent core and the worker pipe block); the event loop
reads its events through a ``TokenChannel``.

Events: ``("started", prompt_tokens)`` (a streamed request's prompt accepted), ``("text",
str)``, ``("done", GenerationStats)``, ``("error", ApiError)`` and, last,
``("end", None)``. When the loop falls behind (a slow client, a busy device), ``take`` returns
every event that piled up at once, so the text goes out as one chunk: the reader sets the
pace, and the producer never waits for it. Closing a channel (the client went away) makes the
producer close the core's generator, which cancels the generation on the device within a
token and records it in telemetry as ``cancelled``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import AsyncGenerator, Awaitable, Callable, MutableMapping
from typing import Any

from agent.core import AgentCore
from agent.errors import AgentError, WorkerFailed
from agent.openai_http.errors import SERVER, ApiError
from agent.runtimes.base import GenerationRequest

log = logging.getLogger("edgefleet.agent.openai")

Event = tuple[str, Any]
Message = MutableMapping[str, Any]  # an ASGI message
SSE_HEAD = [(b"content-type", b"text/event-stream; charset=utf-8"),
            (b"cache-control", b"no-cache"), (b"x-accel-buffering", b"no")]


def _wake(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


class TokenChannel:
    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._lock = threading.Lock()
        self._events: list[Event] = []
        self._waiter: asyncio.Future[None] | None = None
        self.closed = threading.Event()  # the reader is gone: stop generating
        self.model = ""  # the model that serves, once resident (before "started")
        self.load_wait_s = 0.0  # how long the request waited for it to load

    def started(self, model: str, load_wait_s: float) -> None:
        """Producer side: the model is resident and the generation starts."""
        self.model, self.load_wait_s = model, load_wait_s

    def put(self, event: Event) -> None:
        """Producer side (any thread)."""
        with self._lock:
            self._events.append(event)
            waiter, self._waiter = self._waiter, None
        if waiter is not None:
            with contextlib.suppress(RuntimeError):  # the loop closed: nobody is reading
                self._loop.call_soon_threadsafe(_wake, waiter)

    async def take(self) -> list[Event]:
        """Reader side (the event loop): every event available, at least one."""
        while True:
            with self._lock:
                if self._events:
                    events, self._events = self._events, []
                    return events
                waiter = self._waiter = self._loop.create_future()
            await waiter

    def close(self) -> None:
        self.closed.set()


class _Relay:
    """One generation's events into a channel, the prompt's acceptance passed on once."""

    def __init__(self, core: AgentCore, request: GenerationRequest, sha256: str,
                 channel: TokenChannel, adapter: str | None) -> None:
        self.core, self.request, self.sha256 = core, request, sha256
        self.channel, self.adapter = channel, adapter
        self.announced = False  # "started" went out: a stream's head has left
        self.texted = False

    def run(self) -> None:
        stream = self.core.generate_request(self.request, self.sha256, self.adapter,
                                            on_start=self.channel.started)
        try:
            for kind, value in stream:
                if self.channel.closed.is_set():
                    break
                if kind == "started":
                    if self.announced:
                        continue
                    self.announced = True
                self.texted = self.texted or kind == "text"
                self.channel.put((kind, value))
        finally:
            stream.close()  # after a break: cancels the runtime, telemetry says "cancelled"


def produce(core: AgentCore, request: GenerationRequest, sha256: str,
            channel: TokenChannel, adapter: str | None = None) -> None:
    """Run one generation into ``channel`` (in a worker thread); always ends with "end".
    ``adapter``: the LoRA adapter by name (None: the deployed one, "": the base alone). A
    runtime crash after a stream's head has left and before any text is retried once on the
    restarted worker: the status can no longer say 503 (retry), so the agent does what a
    client would have done."""
    try:
        if channel.closed.is_set():
            return  # the client left while the request waited for a thread
        relay = _Relay(core, request, sha256, channel, adapter)
        try:
            relay.run()
        except WorkerFailed:
            if relay.texted or not relay.announced:
                raise
            log.warning("runtime worker crashed during a prefill; running the request again")
            relay.run()
    except AgentError as exc:
        channel.put(("error", ApiError.from_agent_error(exc)))
    except Exception as exc:  # a bug, not the client's fault: say so, keep serving
        log.exception("generation failed")
        channel.put(("error", ApiError(500, f"internal error: {type(exc).__name__}: {exc}",
                                       SERVER, "internal_error")))
    finally:
        channel.put(("end", None))


class EventStream:
    """Server-sent events as a bare ASGI response. The head goes out with the first chunk
    (alone for an empty one: the prompt was accepted, the text is to come), naming the
    model that serves and how long the request waited for it to load
    (``X-Edgefleet-Model``, ``X-Edgefleet-Load-Wait-Ms``, as on a response that is not
    streamed); the handler's task watching for the client leaving goes on doing so here: it
    closes the channel (the generation stops within a token) and ends the response. Starlette's
    ``StreamingResponse`` runs the same body in an anyio task group beside a disconnect
    listener (on servers of ASGI spec 2.3, uvicorn's), which cost 3-4 ms before the first
    chunk here (docs/serving.md); uvicorn drops a write after the client left without an
    error, hence the watcher, and a server of spec 2.4 raises ``OSError`` instead, which ends
    the response the same way. The channel closes however the response ends."""

    def __init__(self, body: AsyncGenerator[bytes, None], channel: TokenChannel,
                 gone: asyncio.Future[None]) -> None:
        self._body = body
        self._channel = channel
        self._gone = gone  # the handler's ``until_disconnect`` task, handed over

    async def __call__(self, scope: Message, receive: Callable[[], Awaitable[Message]],
                       send: Callable[[Message], Awaitable[None]]) -> None:
        gone = self._gone
        gone.add_done_callback(lambda _: self._channel.close())
        head = True
        try:
            async for chunk in self._body:
                if gone.done():
                    return
                if head:  # the model and its load wait are known by now
                    await send({"type": "http.response.start", "status": 200,
                                "headers": [*SSE_HEAD, *self._served()]})
                    head = False
                if chunk:
                    await send({"type": "http.response.body", "body": chunk,
                                "more_body": True})
            if not gone.done():
                await send({"type": "http.response.body", "body": b"", "more_body": False})
        except OSError:
            return  # the client left (a server of ASGI spec 2.4 says so on the write)
        finally:
            gone.cancel()
            self._channel.close()
            await self._body.aclose()

    def _served(self) -> list[tuple[bytes, bytes]]:
        if not self._channel.model:
            return []
        served = served_headers(self._channel.model, self._channel.load_wait_s)
        return [(k.lower().encode(), v.encode()) for k, v in served.items()]


def served_headers(model: str, load_wait_s: float) -> dict[str, str]:
    """The model that serves a request and how long the request waited for it to load, as
    the response's headers (streamed or not)."""
    return {"X-Edgefleet-Model": model, "X-Edgefleet-Load-Wait-Ms": f"{load_wait_s * 1000:.1f}"}


async def until_disconnect(receive: Callable[[], Awaitable[Message]]) -> None:
    """Returns when the client has gone (or the response is complete); a failing receive
    counts as gone."""
    with contextlib.suppress(Exception):
        while (await receive())["type"] != "http.disconnect":
            pass
