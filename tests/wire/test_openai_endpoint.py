"""The OpenAI-compatible endpoint of a real agent with the tiny-llama model, through the real
`openai` client and curl: responses, streaming, sampling parameters, errors, cancellation and
telemetry."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import openai
import pytest

from agent.rpc import agent_pb2 as pb
from agent.rpc import agent_pb2_grpc as pb_grpc
from tests.agent_process import AgentProcess
from tests.openai_agent import curl, free_port, sse_events, start, wait_telemetry

PROMPT = "The edge device reports"
CHAT = [{"role": "system", "content": "You are terse."},
        {"role": "user", "content": "How is the fleet?"}]


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, model_cache: Path
           ) -> Iterator[tuple[AgentProcess, str]]:
    """One agent with tiny-llama q4_k_m loaded; yields it and the endpoint's base URL."""
    port = free_port()
    agent = start(tmp_path_factory.mktemp("openai") / "data", f"127.0.0.1:{port}",
                  model_cache / "tiny-llama" / "tiny-llama-q4_k_m.gguf")
    try:
        yield agent, f"http://127.0.0.1:{port}"
    finally:
        agent.stop()


@pytest.fixture(scope="module")
def client(served: tuple[AgentProcess, str]) -> openai.OpenAI:
    return openai.OpenAI(base_url=served[1] + "/v1", api_key="unused", max_retries=0,
                         timeout=60)


def _complete(client: openai.OpenAI, **kw: Any) -> Any:
    return client.completions.create(model="tiny-llama", prompt=PROMPT, **kw)


def _warm(client: openai.OpenAI) -> None:
    """One request with PROMPT first, so the requests compared after it all reuse the same
    cached prompt (a batch evaluation of the whole prompt can differ in the last bits)."""
    _complete(client, max_tokens=1)


def _chat(client: openai.OpenAI, **kw: Any) -> Any:
    return client.chat.completions.create(model="tiny-llama", messages=CHAT,  # type: ignore[arg-type]
                                          **kw)


def test_models_lists_the_active_model_under_its_catalog_name(client: openai.OpenAI) -> None:
    models = list(client.models.list())
    assert [m.id for m in models] == ["tiny-llama"]
    assert models[0].owned_by == "edgefleet"
    assert client.models.retrieve("tiny-llama").id == "tiny-llama"
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("phi3-mini")


def test_chat_completion_with_usage(client: openai.OpenAI) -> None:
    response = _chat(client, max_tokens=12, temperature=0)
    choice = response.choices[0]
    assert response.object == "chat.completion" and response.model == "tiny-llama"
    assert choice.message.role == "assistant" and choice.message.content
    assert choice.finish_reason == "length"
    assert response.usage.completion_tokens == 12
    assert response.usage.prompt_tokens > 10  # the system and user turns, templated
    assert response.usage.total_tokens == response.usage.prompt_tokens + 12


def test_streamed_chat_is_the_same_text_and_ends_with_usage(client: openai.OpenAI) -> None:
    _chat(client, max_tokens=24, temperature=0)  # both below start from the same cache state
    whole = _chat(client, max_tokens=24, temperature=0)
    chunks = list(_chat(client, max_tokens=24, temperature=0, stream=True,
                        stream_options={"include_usage": True}))
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == whole.choices[0].message.content
    finishing = [c.choices[0].finish_reason for c in chunks if c.choices]
    assert finishing[-1] == "length" and set(finishing[:-1]) == {None}
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == 24
    assert all(c.usage is None for c in chunks[:-1])


def test_stream_without_usage_has_none(client: openai.OpenAI) -> None:
    chunks = list(_chat(client, max_tokens=4, stream=True))
    assert chunks[-1].choices[0].finish_reason == "length"
    assert all(getattr(c, "usage", None) is None for c in chunks)


def test_completions_stop_sequence_cuts_the_text(client: openai.OpenAI) -> None:
    _warm(client)
    free = _complete(client, max_tokens=40, temperature=0).choices[0].text
    stop = next(free[i:i + 3] for i in range(4, len(free) - 3)
                if free.find(free[i:i + 3]) == i and free[i:i + 3].strip())
    for given in (stop, [stop, "never-generated"]):
        cut = _complete(client, max_tokens=40, temperature=0, stop=given).choices[0]
        assert cut.text == free[: free.find(stop)]
        assert cut.finish_reason == "stop"


def test_same_seed_same_text_and_top_p_zero_is_greedy(client: openai.OpenAI) -> None:
    def text(**kw: Any) -> str:
        return str(_complete(client, max_tokens=24, **kw).choices[0].text)

    _warm(client)
    greedy = text(temperature=0)
    assert text(temperature=1.5, seed=42) == text(temperature=1.5, seed=42)
    assert len({text(temperature=1.5, seed=s) for s in range(4)}) > 1
    assert text(temperature=1.0, top_p=0.0) == greedy


def _grpc_text(agent: AgentProcess, **kw: Any) -> tuple[str, Any]:
    with grpc.insecure_channel(f"127.0.0.1:{agent.port}") as channel:
        events = list(pb_grpc.AgentServiceStub(channel).Generate(
            pb.GenerateRequest(prompt=PROMPT, **kw), timeout=60))
    return "".join(e.text for e in events[:-1]), events[-1].summary


def test_grpc_generate_takes_the_same_sampling_parameters(
        served: tuple[AgentProcess, str], client: openai.OpenAI) -> None:
    agent, _ = served
    params = {"max_tokens": 24, "temperature": 1.5, "seed": 7, "top_p": 0.9}
    _warm(client)
    over_http = _complete(client, **params).choices[0].text
    assert _grpc_text(agent, **params)[0] == over_http
    stop = over_http[3:6]
    text, summary = _grpc_text(agent, stop=[stop], **params)
    assert text == over_http[: over_http.find(stop)] and summary.finish_reason == "stop"


@pytest.mark.parametrize(("call", "error", "status", "code", "param"), [
    (lambda c: c.completions.create(model="phi3-mini", prompt="x"),
     openai.NotFoundError, 404, "model_not_found", "model"),
    (lambda c: c.chat.completions.create(model="tiny-llama", messages=CHAT, temperature=5),
     openai.BadRequestError, 400, "invalid_value", "temperature"),
    (lambda c: c.chat.completions.create(model="tiny-llama", messages=CHAT, n=2),
     openai.BadRequestError, 400, "unsupported_parameter", "n"),
    (lambda c: c.completions.create(model="tiny-llama", prompt="hello " * 3000),
     openai.BadRequestError, 400, "context_length_exceeded", "prompt"),
    (lambda c: c.chat.completions.create(
        model="tiny-llama", messages=[{"role": "user", "content": "hello " * 3000}],
        stream=True), openai.BadRequestError, 400, "context_length_exceeded", "messages"),
])
def test_errors_have_the_openai_shape_and_status(client: openai.OpenAI, call: Any, error: Any,
                                                 status: int, code: str, param: str) -> None:
    with pytest.raises(error) as info:
        call(client)
    assert info.value.status_code == status
    assert info.value.body["code"] == code and info.value.body["param"] == param
    assert info.value.body["message"]


def test_curl_chat_and_streamed_completion(served: tuple[AgentProcess, str],
                                           tmp_path: Path) -> None:
    _, url = served
    status, body = curl(f"{url}/v1/chat/completions", "-H", "Content-Type: application/json",
                        "-d", json.dumps({"model": "tiny-llama", "messages": CHAT,
                                          "max_tokens": 5}))
    assert status == 200
    reply = json.loads(body)
    assert reply["usage"]["completion_tokens"] == 5
    assert reply["timings"]["decode_tokens_per_s"] > 0  # edgefleet's addition
    head = tmp_path / "head"
    status, body = curl(f"{url}/v1/completions", "-D", str(head), "-d", json.dumps(
        {"model": "tiny-llama", "prompt": PROMPT, "max_tokens": 30, "stream": True,
         "stream_options": {"include_usage": True}}))
    headers = head.read_text().lower()
    assert "content-type: text/event-stream; charset=utf-8" in headers
    assert "cache-control: no-cache" in headers and "transfer-encoding: chunked" in headers
    events = sse_events(body)
    assert status == 200 and events[-1] == "[DONE]"
    assert events[-2]["usage"]["completion_tokens"] == 30
    assert all(e["object"] == "text_completion" for e in events[:-1])
    assert "".join(e["choices"][0]["text"] for e in events[:-2])


@pytest.mark.parametrize(("args", "status", "code"), [
    (("-d", "{not json"), 400, "invalid_json"),
    (("-d", "[]"), 400, None),
    (("-X", "GET"), 405, None),
])
def test_curl_malformed_requests(served: tuple[AgentProcess, str], args: tuple[str, ...],
                                 status: int, code: str | None) -> None:
    got, body = curl(f"{served[1]}/v1/chat/completions", *args)
    assert got == status
    error = json.loads(body)["error"]
    assert error["code"] == code and error["type"] == "invalid_request_error"


def test_unknown_path_is_an_openai_404(served: tuple[AgentProcess, str]) -> None:
    status, body = curl(f"{served[1]}/v1/embeddings", "-d", "{}")
    assert status == 404 and json.loads(body)["error"]["code"] == "not_found"


def test_requests_feed_the_agent_telemetry(served: tuple[AgentProcess, str],
                                           client: openai.OpenAI) -> None:
    agent, _ = served
    before = len(wait_telemetry(agent, 0))
    response = _chat(client, max_tokens=9, temperature=0)
    record = wait_telemetry(agent, before + 1)[-1]
    assert record.outcome == "ok" and record.completion_tokens == 9
    assert record.prompt_tokens == response.usage.prompt_tokens
    assert record.ttft_ms > 0 and record.decode_tokens_per_s > 0 and record.energy_meter


def _generation_runs_clean(client: openai.OpenAI) -> None:
    assert _complete(client, max_tokens=3).usage.completion_tokens == 3


def test_client_disconnect_mid_stream_cancels_on_the_device(
        served: tuple[AgentProcess, str], client: openai.OpenAI) -> None:
    agent, _ = served
    before = len(wait_telemetry(agent, 0))
    stream = _complete(client, max_tokens=2000, temperature=0, stream=True)
    first = next(iter(stream))
    assert first.choices[0].text
    stream.close()  # the app goes away after the first chunk
    record = wait_telemetry(agent, before + 1)[-1]
    print("cancel-stream", record.outcome, record.completion_tokens)
    assert record.outcome == "cancelled"
    assert 0 < record.completion_tokens < 1500  # stopped, not run to max_tokens
    _generation_runs_clean(client)


def test_client_gone_during_a_non_streamed_request_cancels_it(
        served: tuple[AgentProcess, str], client: openai.OpenAI) -> None:
    agent, url = served
    before = len(wait_telemetry(agent, 0))
    body = json.dumps({"model": "tiny-llama", "prompt": PROMPT, "max_tokens": 2000,
                       "temperature": 0}).encode()
    port = int(url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: localhost\r\n"
                     b"Content-Type: application/json\r\nContent-Length: "
                     + str(len(body)).encode() + b"\r\n\r\n" + body)
        time.sleep(0.3)  # generating; then the app gives up and closes the connection
    record = wait_telemetry(agent, before + 1)[-1]
    print("cancel-nonstream", record.outcome, record.completion_tokens)
    assert record.outcome == "cancelled" and record.completion_tokens < 1500
    _generation_runs_clean(client)


def test_concurrent_requests_queue_and_all_complete(client: openai.OpenAI) -> None:
    results: list[int] = []

    def one() -> None:
        results.append(_complete(client, max_tokens=16).usage.completion_tokens)

    threads = [threading.Thread(target=one) for _ in range(4)]
    started = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert results == [16] * 4, f"after {time.monotonic() - started:.1f} s"
