"""OpenAI request bodies -> ``GenerationRequest``; generation results -> OpenAI JSON. Pure.

Parameters the agent cannot honour (several choices, logprobs, tools, penalties, JSON mode)
are refused with a 400 naming the parameter, never silently ignored. Unset sampling
parameters take llama.cpp's defaults (temperature 0.8, top_p 0.95, top_k 40, min_p 0.05), as
llama.cpp's own server does.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from agent.openai_http.errors import ApiError, bad_param
from agent.runtimes.base import ChatMessage, GenerationRequest, GenerationStats

DEFAULT_TEMPERATURE = 0.8
COMPLETIONS_DEFAULT_MAX_TOKENS = 16  # the legacy completions API's documented default
ROLES = {"system", "developer", "user", "assistant", "tool"}
COLLECT_INTERVAL_S = 0.1


@dataclass(frozen=True)
class ParsedRequest:
    model: str
    generation: GenerationRequest
    chat: bool
    stream: bool = False
    include_usage: bool = False


def _number(body: dict[str, Any], name: str, lo: float, hi: float) -> float | None:
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not lo <= value <= hi:
        raise bad_param(name, f"{name} must be a number between {lo:g} and {hi:g}, "
                              f"got {value!r}")
    return float(value)


def _integer(body: dict[str, Any], name: str, lo: int, hi: int) -> int | None:
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise bad_param(name, f"{name} must be an integer between {lo} and {hi}, got {value!r}")
    return value


def _stop(body: dict[str, Any]) -> tuple[str, ...]:
    stop = body.get("stop")
    if stop is None:
        return ()
    if isinstance(stop, str):
        stop = [stop]
    if not isinstance(stop, list) or not all(isinstance(s, str) and s for s in stop):
        raise bad_param("stop", "stop must be a non-empty string or a list of them")
    return tuple(stop)


def _refuse_unsupported(body: dict[str, Any]) -> None:
    """Each rule: the parameter, a value that asks for something the agent does not do."""
    rules: list[tuple[str, Any, str]] = [
        ("n", lambda v: v not in (None, 1), "only n=1 is supported"),
        ("best_of", lambda v: v not in (None, 1), "only best_of=1 is supported"),
        ("logprobs", lambda v: v not in (None, False, 0), "logprobs are not supported"),
        ("top_logprobs", lambda v: v not in (None, 0), "logprobs are not supported"),
        ("echo", lambda v: v not in (None, False), "echo is not supported"),
        ("suffix", lambda v: v not in (None, ""), "suffix (insertion) is not supported"),
        ("logit_bias", lambda v: bool(v), "logit_bias is not supported"),
        ("tools", lambda v: bool(v), "tools (function calling) are not supported"),
        ("functions", lambda v: bool(v), "functions are not supported"),
        ("tool_choice", lambda v: v not in (None, "none", "auto"),
         "tools (function calling) are not supported"),
        ("response_format", lambda v: v is not None and (
            not isinstance(v, dict) or v.get("type") != "text"),
         "only the text response format is supported"),
        ("frequency_penalty", lambda v: v not in (None, 0, 0.0),
         "frequency_penalty is not supported"),
        ("presence_penalty", lambda v: v not in (None, 0, 0.0),
         "presence_penalty is not supported"),
    ]
    for name, asks, why in rules:
        if asks(body.get(name)):
            raise ApiError(400, f"{why} by this endpoint ({name}={body.get(name)!r})",
                           code="unsupported_parameter", param=name)


def _common(body: Any, chat: bool, stream_interval_s: float, default_max: int
            ) -> tuple[dict[str, Any], dict[str, Any]]:
    if not isinstance(body, dict):
        raise ApiError(400, "the request body must be a JSON object")
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise bad_param("model", "model is required: the name /v1/models lists")
    _refuse_unsupported(body)
    stream = body.get("stream") or False
    if not isinstance(stream, bool):
        raise bad_param("stream", "stream must be true or false")
    options = body.get("stream_options") or {}
    if not isinstance(options, dict):
        raise bad_param("stream_options", "stream_options must be an object")
    max_tokens = _integer(body, "max_tokens", 1, 1 << 20)
    if chat and max_tokens is None:
        max_tokens = _integer(body, "max_completion_tokens", 1, 1 << 20)
    temperature = _number(body, "temperature", 0.0, 2.0)
    seed = _integer(body, "seed", -(1 << 63), (1 << 63) - 1)
    generation = {
        "max_tokens": default_max if max_tokens is None else max_tokens,
        "temperature": DEFAULT_TEMPERATURE if temperature is None else temperature,
        "top_p": _number(body, "top_p", 0.0, 1.0),
        "stop": _stop(body),
        "seed": seed,
        # not streamed: nobody sees the pieces, so send few (the disconnect check runs per
        # piece, so still some)
        "stream_interval_s": stream_interval_s if stream else COLLECT_INTERVAL_S,
        # streamed: the response's head leaves once the worker has accepted the prompt
        "announce_prefill": stream,
    }
    request = {"model": model, "chat": chat, "stream": stream,
               "include_usage": bool(stream and options.get("include_usage"))}
    return request, generation


def _content(message: dict[str, Any], index: int) -> str:
    content = message.get("content")
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = []
        for part in content:
            if not isinstance(part, dict) or part.get("type") != "text":
                raise ApiError(400, "only text content parts are supported",
                               code="unsupported_parameter", param=f"messages[{index}].content")
            texts.append(str(part.get("text", "")))
        return "".join(texts)
    raise bad_param(f"messages[{index}].content", "content must be a string or a list of "
                                                  "text parts")


def parse_chat(body: Any, stream_interval_s: float = 0.0) -> ParsedRequest:
    """Raises ApiError (400) naming the parameter at fault."""
    request, generation = _common(body, True, stream_interval_s, default_max=0)
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise bad_param("messages", "messages must be a non-empty list")
    parsed = []
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or m.get("role") not in ROLES:
            raise bad_param(f"messages[{i}].role",
                            f"each message needs a role, one of {', '.join(sorted(ROLES))}")
        # "developer" is OpenAI's newer name for system instructions; templates know "system"
        role = "system" if m["role"] == "developer" else m["role"]
        parsed.append(ChatMessage(role, _content(m, i)))
    return ParsedRequest(generation=GenerationRequest(messages=tuple(parsed), **generation),
                         **request)


def parse_completion(body: Any, stream_interval_s: float = 0.0) -> ParsedRequest:
    """Raises ApiError (400) naming the parameter at fault."""
    request, generation = _common(body, False, stream_interval_s,
                                  default_max=COMPLETIONS_DEFAULT_MAX_TOKENS)
    prompt = body.get("prompt", "")
    if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], str):
        prompt = prompt[0]
    if not isinstance(prompt, str):
        raise ApiError(400, "prompt must be one string (one prompt per request; token arrays "
                            "are not supported)", code="unsupported_parameter", param="prompt")
    return ParsedRequest(generation=GenerationRequest(prompt=prompt, **generation), **request)


def usage(stats: GenerationStats) -> dict[str, int]:
    return {"prompt_tokens": stats.prompt_tokens, "completion_tokens": stats.completion_tokens,
            "total_tokens": stats.prompt_tokens + stats.completion_tokens}


def timings(stats: GenerationStats) -> dict[str, Any]:
    """edgefleet's addition (llama.cpp's server adds ``timings`` too; clients ignore it)."""
    return {"ttft_ms": round(stats.ttft_s * 1000, 3), "total_ms": round(stats.total_s * 1000, 3),
            "prefill_tokens_per_s": round(stats.prefill_tokens_per_s, 2),
            "decode_tokens_per_s": round(stats.decode_tokens_per_s, 2),
            "energy_j": round(stats.energy_j, 6),
            "joules_per_token": round(stats.joules_per_token, 6),
            "energy_meter": stats.energy_meter,
            # waited for the model to load on demand first (several models per device)
            "load_wait_ms": round(stats.load_wait_s * 1000, 3)}


def finish_reason(stats: GenerationStats) -> str:
    return "length" if stats.finish_reason == "length" else "stop"


@dataclass
class Responder:
    """Builds the response objects of one request (one id, one creation time)."""

    model: str
    chat: bool
    id: str = ""
    created: int = field(default_factory=lambda: int(time.time()))

    def __post_init__(self) -> None:
        self.id = self.id or ("chatcmpl-" if self.chat else "cmpl-") + uuid.uuid4().hex[:24]

    def _envelope(self, chunk: bool) -> dict[str, Any]:
        obj = ("chat.completion.chunk" if chunk else "chat.completion") if self.chat else (
            "text_completion")
        return {"id": self.id, "object": obj, "created": self.created, "model": self.model}

    def completion(self, text: str, stats: GenerationStats) -> dict[str, Any]:
        choice: dict[str, Any] = {"index": 0, "logprobs": None,
                                  "finish_reason": finish_reason(stats)}
        if self.chat:
            choice["message"] = {"role": "assistant", "content": text}
        else:
            choice["text"] = text
        return {**self._envelope(False), "choices": [choice], "usage": usage(stats),
                "timings": timings(stats)}

    def chunk(self, text: str | None = None, finish: str | None = None, first: bool = False,
              include_usage: bool = False, stats: GenerationStats | None = None
              ) -> dict[str, Any]:
        """One stream chunk; the one that finishes (``stats`` given) carries the timings."""
        choice: dict[str, Any] = {"index": 0, "logprobs": None, "finish_reason": finish}
        if self.chat:
            delta: dict[str, Any] = {"role": "assistant", "content": ""} if first else {}
            if text:
                delta["content"] = text
            choice["delta"] = delta
        else:
            choice["text"] = text or ""
        out = {**self._envelope(True), "choices": [choice]}
        if include_usage:
            out["usage"] = None  # OpenAI: null on every chunk but the last
        if stats is not None:
            out["timings"] = timings(stats)
        return out

    def usage_chunk(self, stats: GenerationStats) -> dict[str, Any]:
        """The last chunk when ``stream_options.include_usage``: no choices, the usage."""
        return {**self._envelope(True), "choices": [], "usage": usage(stats)}
