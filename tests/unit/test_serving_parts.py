"""Pure parts of the serving path: OpenAI request parsing, error mapping, stop sequences, listen
addresses, the thread -> event loop channel and the worker's piece batching."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent.errors import (
    AgentError,
    ContextLengthExceeded,
    GenerationFailed,
    InvalidRequest,
    NoActiveModel,
    NotFound,
    WorkerFailed,
)
from agent.local_address import ListenError, bind_local, is_local, parse_address
from agent.openai_http import schema
from agent.openai_http.errors import ApiError
from agent.openai_http.streaming import TokenChannel
from agent.runtimes.base import ChatMessage, GenerationRequest, GenerationStats
from agent.runtimes.stops import StopScanner

ROOT = Path(__file__).resolve().parents[2]


def test_chat_request_maps_every_supported_parameter() -> None:
    parsed = schema.parse_chat({
        "model": "m", "messages": [
            {"role": "developer", "content": "be brief"},
            {"role": "user", "content": [{"type": "text", "text": "hi "},
                                         {"type": "text", "text": "there"}]}],
        "max_completion_tokens": 7, "temperature": 0.2, "top_p": 0.5, "stop": "END",
        "seed": 42, "stream": True, "stream_options": {"include_usage": True},
    }, stream_interval_s=0.01)
    g = parsed.generation
    assert parsed.model == "m" and parsed.chat and parsed.stream and parsed.include_usage
    assert g.messages == (ChatMessage("system", "be brief"), ChatMessage("user", "hi there"))
    assert (g.max_tokens, g.temperature, g.top_p, g.stop, g.seed) == (7, 0.2, 0.5, ("END",), 42)
    assert g.stream_interval_s == 0.01


def test_defaults_follow_llama_cpp_and_openai() -> None:
    chat = schema.parse_chat({"model": "m", "messages": [{"role": "user", "content": "x"}]},
                             stream_interval_s=0.01)
    assert chat.generation.max_tokens == 0  # chat: until the context is full
    assert chat.generation.temperature == schema.DEFAULT_TEMPERATURE
    assert chat.generation.top_p is None and chat.generation.seed is None
    assert chat.generation.stream_interval_s == schema.COLLECT_INTERVAL_S  # not streamed
    completion = schema.parse_completion({"model": "m", "prompt": ["only one"]})
    assert completion.generation.max_tokens == schema.COMPLETIONS_DEFAULT_MAX_TOKENS
    assert completion.generation.prompt == "only one" and not completion.include_usage


@pytest.mark.parametrize(("body", "param"), [
    ({"messages": [{"role": "user", "content": "x"}]}, "model"),
    ({"model": "m", "messages": []}, "messages"),
    ({"model": "m", "messages": [{"role": "robot", "content": "x"}]}, "messages[0].role"),
    ({"model": "m", "messages": [{"role": "user", "content": 5}]}, "messages[0].content"),
    ({"model": "m", "messages": [{"role": "user", "content": [{"type": "image_url"}]}]},
     "messages[0].content"),
    ({"model": "m", "messages": [{"role": "user", "content": "x"}], "temperature": 2.5},
     "temperature"),
    ({"model": "m", "messages": [{"role": "user", "content": "x"}], "temperature": True},
     "temperature"),
    ({"model": "m", "messages": [{"role": "user", "content": "x"}], "top_p": -0.1}, "top_p"),
    ({"model": "m", "messages": [{"role": "user", "content": "x"}], "max_tokens": 0},
     "max_tokens"),
    ({"model": "m", "messages": [{"role": "user", "content": "x"}], "seed": "7"}, "seed"),
    ({"model": "m", "messages": [{"role": "user", "content": "x"}], "stop": ["", "x"]}, "stop"),
    ({"model": "m", "messages": [{"role": "user", "content": "x"}], "n": 2}, "n"),
    ({"model": "m", "messages": [{"role": "user", "content": "x"}], "logprobs": True},
     "logprobs"),
    ({"model": "m", "messages": [{"role": "user", "content": "x"}],
      "tools": [{"type": "function"}]}, "tools"),
    ({"model": "m", "messages": [{"role": "user", "content": "x"}],
      "response_format": {"type": "json_object"}}, "response_format"),
    ({"model": "m", "messages": [{"role": "user", "content": "x"}], "presence_penalty": 1},
     "presence_penalty"),
    ({"model": "m", "messages": [{"role": "user", "content": "x"}], "stream": "yes"}, "stream"),
])
def test_bad_chat_requests_name_the_parameter(body: dict[str, Any], param: str) -> None:
    with pytest.raises(ApiError) as info:
        schema.parse_chat(body)
    assert info.value.status == 400 and info.value.param == param
    assert info.value.body()["error"]["type"] == "invalid_request_error"


@pytest.mark.parametrize("prompt", [["a", "b"], [1, 2, 3], 7])
def test_completions_take_one_text_prompt(prompt: Any) -> None:
    with pytest.raises(ApiError) as info:
        schema.parse_completion({"model": "m", "prompt": prompt})
    assert info.value.param == "prompt"


def test_a_body_that_is_not_an_object_is_refused() -> None:
    with pytest.raises(ApiError) as info:
        schema.parse_completion(["model", "m"])
    assert info.value.status == 400


@pytest.mark.parametrize(("error", "status", "code"), [
    (ContextLengthExceeded("long"), 400, "context_length_exceeded"),
    (InvalidRequest("bad"), 400, None),
    (NotFound("which"), 404, "model_not_found"),
    (NoActiveModel("none"), 503, "model_not_loaded"),
    (WorkerFailed("crash"), 503, "runtime_unavailable"),
    (GenerationFailed("raised"), 500, "runtime_error"),
])
def test_agent_errors_map_to_one_status_each(error: AgentError, status: int,
                                             code: str | None) -> None:
    api = ApiError.from_agent_error(error)
    body = api.body()["error"]
    assert (api.status, body["code"]) == (status, code)
    assert set(body) == {"message", "type", "param", "code"}
    assert body["type"] == ("server_error" if status >= 500 else "invalid_request_error")


def test_generation_request_check_is_shared_by_grpc_and_http() -> None:
    with pytest.raises(InvalidRequest, match="temperature"):
        GenerationRequest(temperature=3.0).check()
    with pytest.raises(InvalidRequest, match="top_p"):
        GenerationRequest(top_p=float("nan")).check()
    with pytest.raises(InvalidRequest, match="stop"):
        GenerationRequest(stop=("x",) * 17).check()
    with pytest.raises(InvalidRequest, match="either"):
        GenerationRequest(prompt="p", messages=(ChatMessage("user", "m"),)).check()
    assert GenerationRequest(top_p=1.0, stop=("a",), seed=-5).check()


def test_responder_shapes() -> None:
    stats = GenerationStats(prompt_tokens=3, completion_tokens=2, ttft_s=0.01, total_s=0.02,
                            finish_reason="length")
    chat = schema.Responder(model="m", chat=True)
    body = chat.completion("hi", stats)
    assert body["object"] == "chat.completion" and body["id"].startswith("chatcmpl-")
    assert body["choices"][0]["message"] == {"role": "assistant", "content": "hi"}
    assert body["choices"][0]["finish_reason"] == "length"
    assert body["usage"] == {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}
    first = chat.chunk(first=True, include_usage=True)
    assert first["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert first["usage"] is None
    assert chat.usage_chunk(stats)["choices"] == []
    text = schema.Responder(model="m", chat=False).chunk("x")
    assert text["object"] == "text_completion" and text["choices"][0]["text"] == "x"
    assert schema.finish_reason(GenerationStats(finish_reason="cancelled")) == "stop"


@pytest.mark.parametrize(("pieces", "stops", "shown", "stopped"), [
    (["Hello", " wor", "ld"], ("world",), "Hello ", True),
    (["ab", "c"], ("bd",), "abc", False),  # "b" was held, then released
    (["x<|im", "_end|>y"], ("<|im_end|>",), "x", True),
    (["END"], ("END",), "", True),
    (["a", "b"], (), "ab", False),
])
def test_stop_scanner(pieces: list[str], stops: tuple[str, ...], shown: str,
                      stopped: bool) -> None:
    scanner = StopScanner(stops)
    out = ""
    for piece in pieces:
        out += scanner.feed(piece)
        if scanner.stopped:
            break
    out += "" if scanner.stopped else scanner.flush()
    assert (out, scanner.stopped) == (shown, stopped)


@given(st.text(alphabet="abc", max_size=30), st.lists(st.integers(1, 5), max_size=12),
       st.lists(st.text(alphabet="abc", min_size=1, max_size=3), max_size=3))
def test_stop_scanner_cuts_at_the_first_completed_stop_whatever_the_pieces(
        text: str, cuts: list[int], stops: list[str]) -> None:
    pieces, i = [], 0
    for n in cuts:
        pieces.append(text[i:i + n])
        i += n
    pieces.append(text[i:])
    scanner = StopScanner(tuple(stops))
    out = ""
    for piece in pieces:
        out += scanner.feed(piece)
        if scanner.stopped:
            break
    out += "" if scanner.stopped else scanner.flush()
    hits = [(text.find(s) + len(s), text.find(s)) for s in stops if s in text]
    assert out == (text[: min(hits)[1]] if hits else text)  # the stop completed first
    assert scanner.stopped == bool(hits)


@pytest.mark.parametrize(("address", "expected"), [
    ("unix:///run/x.sock", ("/run/x.sock", "", 0)),
    ("unix:/run/x.sock", ("/run/x.sock", "", 0)),
    ("127.0.0.1:8080", ("", "127.0.0.1", 8080)),
    ("[::1]:8080", ("", "::1", 8080)),
    ("localhost:0", ("", "localhost", 0)),
])
def test_parse_address(address: str, expected: tuple[str, str, int]) -> None:
    a = parse_address(address)
    assert (a.unix_path, a.host, a.port) == expected


@pytest.mark.parametrize("address", ["unix:relative.sock", "8080", "127.0.0.1:http", ":80"])
def test_parse_address_refuses_garbage(address: str) -> None:
    with pytest.raises(ListenError):
        parse_address(address)


def test_only_loopback_is_bound() -> None:
    with pytest.raises(ListenError, match="not loopback"):
        bind_local(parse_address("0.0.0.0:0"))
    sock = bind_local(parse_address("localhost:0"))
    try:
        assert sock.getsockname()[1] > 0
    finally:
        sock.close()


@pytest.mark.parametrize(("address", "local"), [
    ("unix:relative.sock", True), ("127.0.0.1:50051", True), ("[::1]:1", True),
    ("localhost:1", True), ("0.0.0.0:50051", False), ("127.example.invalid:80", False),
])
def test_is_local_resolves_instead_of_matching_text(address: str, local: bool) -> None:
    assert is_local(address) is local


def test_a_unix_socket_path_that_is_a_file_is_not_touched(tmp_path: Path) -> None:
    f = tmp_path / "precious"
    f.write_text("data")
    with pytest.raises(ListenError, match="not a socket"):
        bind_local(parse_address(f"unix://{f}"))
    assert f.read_text() == "data"


def test_channel_hands_over_what_piled_up_at_once() -> None:
    async def scenario() -> list[list[tuple[str, Any]]]:
        channel = TokenChannel(asyncio.get_running_loop())
        first = await asyncio.wait_for(
            asyncio.gather(channel.take(), asyncio.to_thread(channel.put, ("text", "a"))), 5)
        for piece in "bcd":  # the reader is busy: these pile up
            channel.put(("text", piece))
        channel.put(("end", None))
        return [first[0], await channel.take()]

    batches = asyncio.run(scenario())
    assert batches == [[("text", "a")],
                       [("text", "b"), ("text", "c"), ("text", "d"), ("end", None)]]


def test_agent_starts_without_the_http_stack() -> None:
    """Starlette and uvicorn are an extra: importing the agent must not need them."""
    code = ("import sys, agent.server, agent.cli\n"
            "print(','.join(m for m in ('starlette', 'uvicorn') if m in sys.modules))\n")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                            text=True, check=True)
    assert result.stdout.strip() == ""


def test_channel_put_from_many_threads_loses_nothing() -> None:
    async def scenario() -> list[str]:
        channel = TokenChannel(asyncio.get_running_loop())

        def producer(tag: str) -> None:
            for i in range(200):
                channel.put(("text", f"{tag}{i}"))

        threads = [threading.Thread(target=producer, args=(t,)) for t in "xy"]
        for t in threads:
            t.start()
        got: list[str] = []
        while len(got) < 400:
            got += [v for _, v in await asyncio.wait_for(channel.take(), 5)]
        for t in threads:
            t.join()
        return got

    got = asyncio.run(scenario())
    assert sorted(got) == sorted(f"{t}{i}" for t in "xy" for i in range(200))


def test_piece_batcher_sends_one_message_per_interval_only_while_tokens_are_fast() -> None:
    from agent.workers import PieceBatcher

    fast = PieceBatcher(0.010)
    sent = [fast.add(p, t) for p, t in
            (("a", 0.000), ("b", 0.002), ("c", 0.004), ("d", 0.010), ("e", 0.012))]
    assert sent == ["a", None, None, "bcd", None] and fast.rest() == "e"
    slow = PieceBatcher(0.010)  # 50 ms per token: every token goes out alone
    assert [slow.add(p, t) for p, t in (("a", 0.0), ("b", 0.05), ("c", 0.10))] == ["a", "b", "c"]
    every = PieceBatcher(0.0)
    assert [every.add(p, 0.0) for p in "abc"] == ["a", "b", "c"]
