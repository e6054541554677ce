"""The Starlette app: OpenAI routes over ``AgentCore``. Imported only with the openai extra.

Every generation goes through ``AgentCore.generate_request``, the path gRPC ``Generate`` takes,
so it is recorded in the same telemetry (TTFT, tokens/s, energy, outcome). A streamed request
answers its HTTP status once the worker has accepted the prompt (tokenized, within the
context: ``announce_prefill``), so a prompt longer than the context or a missing model is a
real 400/503, not an error inside a 200 stream; the head (and a chat's role chunk) then leaves
while the prompt is read, so the client's own work on it overlaps the prefill instead of
delaying the first text. An error after that is sent as a final ``data: {"error": ...}``
event, as OpenAI does.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncGenerator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from agent.adapters import held_for
from agent.adapters import resolve as resolve_name
from agent.core import AgentCore
from agent.errors import InvalidRequest, NoActiveModel, NotFound
from agent.openai_http import schema
from agent.openai_http.errors import INVALID, ApiError
from agent.openai_http.streaming import (
    Event,
    EventStream,
    TokenChannel,
    produce,
    served_headers,
    until_disconnect,
)
from agent.runtimes.base import GenerationStats
from agent.store import ModelRecord, Slot

MAX_BODY_BYTES = 8 << 20
GENERATION_THREADS = 8  # generations queue on the model's worker; these only wait there
DONE = b"data: [DONE]\n\n"


def sse(obj: dict[str, Any]) -> bytes:
    return b"data: " + json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode() + (
        b"\n\n")


def error_response(exc: ApiError) -> JSONResponse:
    return JSONResponse(exc.body(), status_code=exc.status)


class OpenAIEndpoint:
    """Routes of one agent. ``resolve`` is where a model name picks what serves it: a model
    by its name or one of its aliases (with the adapter deployed on it, if any), or
    ``MODEL+ADAPTER`` for one of the LoRA adapters its slot holds (``MODEL+`` for the base
    alone). A model not resident loads on demand; the wait is in ``timings.load_wait_ms`` and
    the ``X-Edgefleet-Load-Wait-Ms`` header (a stream's head leaves once the prompt is
    accepted, before its first text)."""

    def __init__(self, core: AgentCore, stream_interval_s: float) -> None:
        self.core = core
        self.stream_interval_s = stream_interval_s
        self.executor = ThreadPoolExecutor(GENERATION_THREADS, thread_name_prefix="openai-gen")

    # -- models ---------------------------------------------------------------------------
    def served(self) -> list[Slot]:
        """The slots of text models that requests may reach."""
        return [s for s in self.core.store.read_state().serving()
                if s.active is not None and s.active.format == "gguf"]

    def served_names(self) -> list[tuple[ModelRecord, str]]:
        """Each text model by every name a request may give: MODEL, each ALIAS,
        MODEL+ADAPTER."""
        out = []
        for slot in self.served():
            record = slot.active
            assert record is not None
            out += [(record, name) for name in (
                record.name, *slot.aliases,
                *(f"{record.name}+{a.name}" for a in held_for(slot, record.sha256)))]
        return out

    def resolve_adapter(self, name: str) -> tuple[Slot, str | None]:
        """The slot and the adapter (None: the deployed one; "": none) ``name`` asks for."""
        base, plus, adapter = name.partition("+")
        slot = self.resolve(base)
        if not plus:
            return slot, None
        if adapter:
            resolve_name(slot, adapter)  # NotFound names what it holds
        return slot, adapter

    def resolve(self, name: str) -> Slot:
        """Raises NoActiveModel (503), NotFound (404) or InvalidRequest (not a text model)."""
        state = self.core.store.read_state()
        if not state.serving():
            raise NoActiveModel("no model is loaded on this device; deploy one "
                                "(fleet deploy MODEL --group G)")
        slot = state.named(name) if name else state.default("gguf")
        if slot is None or slot.active is None:
            served = ", ".join(n for _r, n in self.served_names()) or "no text model"
            raise NotFound(f"the model {name!r} does not exist on this device; it serves: "
                           f"{served} (GET /v1/models lists them)")
        if slot.active.format != "gguf":
            raise InvalidRequest(f"{name!r} is an {slot.active.format.upper()} model: it "
                                 "serves tensor inference (Open Inference Protocol), not text")
        return slot

    def model_object(self, record: ModelRecord) -> dict[str, Any]:
        try:
            created = int(self.core.store.blob_path(record.sha256).stat().st_mtime)
        except (OSError, ValueError):
            created = 0
        return {"id": record.name, "object": "model", "created": created,
                "owned_by": "edgefleet", "variant": record.variant, "sha256": record.sha256,
                "context_length": record.n_ctx}

    async def list_models(self, request: Request) -> Response:
        return JSONResponse({"object": "list",
                             "data": [{**self.model_object(r), "id": name}
                                      for r, name in self.served_names()]})

    async def get_model(self, request: Request) -> Response:
        name = request.path_params["model"]
        try:
            slot, _adapter = self.resolve_adapter(name)
            assert slot.active is not None
            return JSONResponse({**self.model_object(slot.active), "id": name})
        except (NoActiveModel, NotFound, InvalidRequest):
            raise ApiError(404, f"the model {name!r} does not exist on this device",
                           INVALID, "model_not_found", "model") from None

    async def health(self, request: Request) -> Response:
        served = self.served()
        if not served:
            raise ApiError.from_agent_error(NoActiveModel("no text model is loaded"))
        return JSONResponse({"status": "ok", "models": [s.name for s in served]})

    # -- generation -----------------------------------------------------------------------
    async def chat_completions(self, request: Request) -> Response | EventStream:
        return await self._generate(request, chat=True)

    async def completions(self, request: Request) -> Response | EventStream:
        return await self._generate(request, chat=False)

    async def _generate(self, request: Request, chat: bool) -> Response | EventStream:
        body = await _json_body(request)
        parse = schema.parse_chat if chat else schema.parse_completion
        parsed = parse(body, self.stream_interval_s)
        try:
            slot, adapter = self.resolve_adapter(parsed.model)
            assert slot.active is not None
        except (NoActiveModel, NotFound, InvalidRequest) as exc:
            api = ApiError.from_agent_error(exc)
            api.param = "model" if api.status != 503 else None
            raise api from None
        loop = asyncio.get_running_loop()
        channel = TokenChannel(loop)
        loop.run_in_executor(self.executor, produce, self.core, parsed.generation,
                             slot.active.sha256, channel, adapter)
        responder = schema.Responder(model=parsed.model, chat=chat)
        gone = asyncio.ensure_future(until_disconnect(request.receive))
        streaming = False
        try:
            first = await _take_unless_gone(channel, gone)
            if first is None:
                return Response(status_code=499)  # nobody is listening any more
            failed = next((v for k, v in first if k == "error"), None)
            if failed is not None and not any(k == "text" for k, _ in first):
                if failed.code == "context_length_exceeded":
                    failed.param = "messages" if chat else "prompt"
                return error_response(failed)
            if parsed.stream:
                streaming = True  # from here EventStream watches for the disconnect
                return EventStream(_stream(first, channel, responder, parsed.include_usage),
                                   channel, gone)
            return await _collect(first, channel, gone, responder)
        finally:
            if not streaming:
                gone.cancel()
                channel.close()  # done, failed, or this handler was cancelled: stop generating

    def app(self) -> Starlette:
        routes = [
            Route("/v1/models", self.list_models, methods=["GET"]),
            Route("/v1/models/{model:path}", self.get_model, methods=["GET"]),
            Route("/v1/chat/completions", self.chat_completions, methods=["POST"]),
            Route("/v1/completions", self.completions, methods=["POST"]),
            Route("/health", self.health, methods=["GET"]),
        ]
        handlers: dict[Any, Any] = {ApiError: _api_error, HTTPException: _http_error}
        return Starlette(routes=routes, exception_handlers=handlers)


async def _api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    return error_response(exc)


async def _http_error(request: Request, exc: Exception) -> Response:
    """Unknown paths and methods, in the OpenAI shape too."""
    assert isinstance(exc, HTTPException)
    return error_response(ApiError(exc.status_code, f"{request.method} {request.url.path}: "
                                   f"{exc.detail}", INVALID,
                                   "not_found" if exc.status_code == 404 else None))


async def _json_body(request: Request) -> Any:
    size = 0
    chunks = []
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise ApiError(413, f"request body over {MAX_BODY_BYTES >> 20} MiB", INVALID,
                           "request_too_large")
        chunks.append(chunk)
    try:
        return json.loads(b"".join(chunks))
    except ValueError as exc:
        raise ApiError(400, f"the request body is not valid JSON: {exc}", INVALID,
                       "invalid_json") from None


async def _take_unless_gone(channel: TokenChannel, gone: asyncio.Future[None]
                            ) -> list[Event] | None:
    """The next events, or None (and the generation cancelled) if the client went away."""
    take = asyncio.ensure_future(channel.take())
    either: list[asyncio.Future[Any]] = [take, gone]
    await asyncio.wait(either, return_when=asyncio.FIRST_COMPLETED)
    if take.done():
        return take.result()
    take.cancel()
    channel.close()
    return None


async def _collect(events: list[Event], channel: TokenChannel, gone: asyncio.Future[None],
                   responder: schema.Responder) -> Response:
    text: list[str] = []
    stats = GenerationStats()
    while True:
        for kind, value in events:
            if kind == "text":
                text.append(value)
            elif kind == "done":
                stats = value
            elif kind == "error":
                return error_response(value)
            elif kind == "end":
                return JSONResponse(responder.completion("".join(text), stats),
                                    headers=served_headers(stats.model, stats.load_wait_s))
        got = await _take_unless_gone(channel, gone)
        if got is None:
            return Response(status_code=499)
        events = got


async def _stream(events: list[Event], channel: TokenChannel, responder: schema.Responder,
                  include_usage: bool) -> AsyncGenerator[bytes, None]:
    """One write per batch of events that were ready together: the text that piled up goes
    out as one chunk at once (with the finishing chunk and usage if they came with it); a
    batch without text waits for the end (it follows within the telemetry record's time),
    so that the finishing chunk and usage leave with ``[DONE]`` in one write. The worker's
    ``started`` (the prompt accepted, the prefill begins) lets the head out at once, with a
    chat's role chunk (``EventStream`` sends a head alone for an empty write)."""
    out: list[bytes] = []
    if responder.chat:
        out.append(sse(responder.chunk(first=True, include_usage=include_usage)))
    while True:
        text = "".join(v for k, v in events if k == "text")
        if not text and any(k == "started" for k, _ in events):
            yield b"".join(out)
            out.clear()
        if text:
            out.append(sse(responder.chunk(text, include_usage=include_usage)))
        for kind, value in events:
            if kind == "done":
                out.append(sse(responder.chunk(finish=schema.finish_reason(value),
                                               include_usage=include_usage, stats=value)))
                if include_usage:
                    out.append(sse(responder.usage_chunk(value)))
            elif kind == "error":
                yield b"".join(out) + sse(value.body())
                return
            elif kind == "end":
                yield b"".join(out) + DONE
                return
        if text:
            yield b"".join(out)
            out.clear()
        events = await channel.take()
