"""The token path's coalescing: what piled up goes out in one pipe read and one HTTP write."""

from __future__ import annotations

import asyncio
import json
import multiprocessing as mp
from typing import Any

from agent.openai_http import schema
from agent.openai_http.streaming import TokenChannel
from agent.runtimes.base import GenerationStats


def _events(raw: bytes) -> list[Any]:
    """The SSE events in one write, ``[DONE]`` as the string."""
    out: list[Any] = []
    for block in raw.decode().split("\n\n"):
        if block:
            assert block.startswith("data: ")
            data = block[len("data: "):]
            out.append(data if data == "[DONE]" else json.loads(data))
    return out


def test_sse_writer_sends_one_write_per_batch_of_ready_events() -> None:
    from agent.openai_http.app import _stream

    stats = GenerationStats(prompt_tokens=3, completion_tokens=3, finish_reason="length")

    async def scenario() -> list[bytes]:
        channel = TokenChannel(asyncio.get_running_loop())
        responder = schema.Responder(model="tiny-llama", chat=False)
        writes = []
        body = _stream([("text", "a")], channel, responder, include_usage=True)
        writes.append(await body.__anext__())  # the first token alone, as soon as it is there
        for event in (("text", "b"), ("text", "c"), ("done", stats), ("end", None)):
            channel.put(event)  # all of these were ready before the writer looked again
        writes += [chunk async for chunk in body]
        return writes

    first, rest = asyncio.run(scenario())
    assert [e["choices"][0]["text"] for e in _events(first)] == ["a"]
    text, finish, usage, done = _events(rest)
    assert text["choices"][0]["text"] == "bc"  # joined: one chunk, not one per token
    assert finish["choices"][0]["finish_reason"] == "length" and "timings" in finish
    assert usage["choices"] == [] and usage["usage"]["completion_tokens"] == 3
    assert done == "[DONE]"


def test_the_end_of_a_stream_is_one_write_even_when_it_comes_in_two_batches() -> None:
    from agent.openai_http.app import _stream

    stats = GenerationStats(prompt_tokens=3, completion_tokens=1, finish_reason="stop")

    async def scenario() -> list[bytes]:
        channel = TokenChannel(asyncio.get_running_loop())
        responder = schema.Responder(model="tiny-llama", chat=False)
        body = _stream([("text", "a")], channel, responder, include_usage=False)
        writes = [await body.__anext__()]
        channel.put(("done", stats))  # the worker's summary...
        later = asyncio.ensure_future(body.__anext__())
        await asyncio.sleep(0.01)
        assert not later.done()  # ...waits for the end rather than going out alone
        channel.put(("end", None))
        writes.append(await later)
        return writes + [chunk async for chunk in body]

    first, end = asyncio.run(scenario())
    assert [e["choices"][0]["text"] for e in _events(first)] == ["a"]
    finish, done = _events(end)
    assert finish["choices"][0]["finish_reason"] == "stop" and done == "[DONE]"


def test_chat_stream_sends_the_role_with_the_first_text() -> None:
    from agent.openai_http.app import _stream

    async def scenario() -> bytes:
        channel = TokenChannel(asyncio.get_running_loop())
        responder = schema.Responder(model="tiny-llama", chat=True)
        body = _stream([("text", "hi")], channel, responder, include_usage=False)
        return await body.__anext__()

    role, text = _events(asyncio.run(scenario()))
    assert role["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert text["choices"][0]["delta"] == {"content": "hi"}


def test_ready_check_sees_messages_and_the_end_of_the_pipe() -> None:
    from agent.workers import _ReadyCheck

    reader, writer = mp.get_context("spawn").Pipe(duplex=False)
    ready = _ReadyCheck(reader)
    assert not ready()
    writer.send(("text", "a"))
    assert ready()
    assert reader.recv() == ("text", "a")
    assert not ready()
    writer.close()  # the worker died: the reader must look, and find EOF
    assert ready()
    reader.close()


def test_the_head_leaves_once_the_prompt_is_accepted_before_the_first_text() -> None:
    from agent.openai_http.app import _stream

    async def scenario(chat: bool) -> list[bytes]:
        channel = TokenChannel(asyncio.get_running_loop())
        responder = schema.Responder(model="tiny-llama", chat=chat)
        body = _stream([("started", 12)], channel, responder, include_usage=False)
        writes = [await body.__anext__()]  # at once: no text yet
        channel.put(("text", "hi"))
        writes.append(await body.__anext__())
        return writes

    head, text = asyncio.run(scenario(chat=False))
    assert head == b""  # the completions head alone (EventStream sends no empty body)
    assert [e["choices"][0]["text"] for e in _events(text)] == ["hi"]
    role, text = asyncio.run(scenario(chat=True))
    assert [e["choices"][0]["delta"] for e in _events(role)] == [
        {"role": "assistant", "content": ""}]
    assert [e["choices"][0]["delta"] for e in _events(text)] == [{"content": "hi"}]


def test_an_empty_chunk_sends_the_head_alone() -> None:
    from agent.openai_http.streaming import EventStream

    async def body() -> Any:
        yield b""
        yield b"data: {}\n\n"

    async def scenario() -> list[dict[str, Any]]:
        loop = asyncio.get_running_loop()
        channel = TokenChannel(loop)
        channel.started("tiny-llama", 0.25)
        sent: list[dict[str, Any]] = []

        async def send(message: dict[str, Any]) -> None:
            sent.append(dict(message))

        async def receive() -> dict[str, Any]:
            return {"type": "http.request", "body": b"", "more_body": False}

        await EventStream(body(), channel, loop.create_future())({}, receive, send)
        return sent

    start, text, end = asyncio.run(scenario())
    assert start["type"] == "http.response.start" and start["status"] == 200
    assert (b"x-edgefleet-model", b"tiny-llama") in start["headers"]
    assert (b"x-edgefleet-load-wait-ms", b"250.0") in start["headers"]
    assert text["body"] == b"data: {}\n\n" and end == {"type": "http.response.body",
                                                         "body": b"", "more_body": False}


class _CrashingCore:
    """Pure logic of ``produce``: a core whose first generations crash the worker at a
    chosen point (after "started", after text, or before anything)."""

    def __init__(self, crashes: int, after: tuple[str, ...]) -> None:
        self.crashes, self.after, self.calls = crashes, after, 0

    def generate_request(self, request: Any, sha256: str, adapter: Any,
                         on_start: Any = None) -> Any:
        from agent.errors import WorkerFailed

        self.calls += 1
        crash = self.calls <= self.crashes
        events = list(self.after) if crash else ["started", "text", "done"]
        for kind in events:
            yield (kind, {"started": 7, "text": "hi", "done": GenerationStats()}[kind])
        if crash:
            raise WorkerFailed("runtime worker crashed (exit -9)")


def _produced(core: _CrashingCore) -> list[str]:
    from agent.openai_http.streaming import produce
    from agent.runtimes.base import GenerationRequest

    loop = asyncio.new_event_loop()
    try:
        channel = TokenChannel(loop)
        produce(core, GenerationRequest(announce_prefill=True), "", channel)  # type: ignore[arg-type]
        events = loop.run_until_complete(channel.take())
    finally:
        loop.close()
    return [k if k != "error" else f"error:{v.code}" for k, v in events]


def test_a_crash_during_the_prefill_after_the_head_left_is_run_again_once() -> None:
    core = _CrashingCore(crashes=1, after=("started",))
    assert _produced(core) == ["started", "text", "done", "end"]  # "started" passed on once
    assert core.calls == 2
    twice = _CrashingCore(crashes=2, after=("started",))
    assert _produced(twice) == ["started", "error:runtime_unavailable", "end"]
    assert twice.calls == 2  # once more, not again and again


def test_a_crash_before_the_head_or_after_text_is_the_client_s_to_retry() -> None:
    before = _CrashingCore(crashes=1, after=())
    assert _produced(before) == ["error:runtime_unavailable", "end"]  # still a real 503
    after_text = _CrashingCore(crashes=1, after=("started", "text"))
    assert _produced(after_text) == ["started", "text", "error:runtime_unavailable", "end"]
    assert before.calls == after_text.calls == 1


def test_an_error_after_the_head_ends_the_stream_with_an_error_event() -> None:
    from agent.openai_http.app import _stream
    from agent.openai_http.errors import ApiError

    async def scenario() -> list[bytes]:
        channel = TokenChannel(asyncio.get_running_loop())
        responder = schema.Responder(model="tiny-llama", chat=True)
        body = _stream([("started", 7)], channel, responder, include_usage=False)
        writes = [await body.__anext__()]
        channel.put(("error", ApiError(500, "the runtime raised", "server_error",
                                       "runtime_error")))
        channel.put(("end", None))
        return writes + [chunk async for chunk in body]

    role, error = asyncio.run(scenario())
    assert _events(role)[0]["choices"][0]["delta"]["role"] == "assistant"
    [event] = _events(error)
    assert event["error"]["code"] == "runtime_error"
