"""What a generation is asked for and what it reports, shared by the agent and its workers.

A ``GenerationRequest`` crosses the worker pipe (pickled), so it holds plain data only. Its
``check()`` is the one place that validates sampling parameters, whichever API they came from
(gRPC ``Generate`` or the OpenAI-compatible HTTP endpoint).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from agent.errors import InvalidRequest

# While tokens come faster than 25 ms apart, streamed text leaves at most once per 25 ms (40
# updates a second, smooth to a reader), so a 500 tokens/s model costs the device, and the app
# reading it, 40 messages a second instead of 500: on a device, decode uses every core, and
# the CPU each message takes comes out of decode. A 5-40 tokens/s model's tokens still go
# one by one.
DEFAULT_STREAM_INTERVAL_S = 0.025
DEFAULT_TOP_P = 0.95  # llama.cpp's default nucleus; used when a request does not set top_p
MAX_STOP_SEQUENCES = 16
MAX_STOP_CHARS = 256


@dataclass(frozen=True)
class ChatMessage:
    role: str  # system | developer | user | assistant | tool
    content: str


@dataclass(frozen=True)
class GenerationRequest:
    """One text generation.

    ``messages`` (a chat) is rendered into the prompt by the model's own chat template inside
    the worker; otherwise ``prompt`` is used as is. ``max_tokens`` 0 means "until the context
    is full". ``seed`` None draws a fresh random seed. ``stream_interval_s``: pieces produced
    within this interval of the last one sent travel together (0 sends every token alone).
    ``adapter``: which loaded LoRA adapter the generation runs with. ``announce_prefill``: the
    worker says when it has accepted the prompt (tokenized, within the context) and starts
    reading it, before the first token (``("started", prompt_tokens)``).
    """

    prompt: str = ""
    messages: tuple[ChatMessage, ...] = ()
    max_tokens: int = 32
    temperature: float = 0.0
    top_p: float | None = None
    stop: tuple[str, ...] = ()
    seed: int | None = None
    stream_interval_s: float = 0.0
    # the LoRA adapter to apply (its sha256, loaded in the worker; "" = the base alone);
    # None leaves the runtime as it is
    adapter: str | None = None
    announce_prefill: bool = False

    def check(self) -> GenerationRequest:
        """Raises InvalidRequest naming the first bad parameter; returns self."""
        if self.max_tokens < 0:
            raise InvalidRequest(f"max_tokens must be >= 0, got {self.max_tokens}")
        if not (math.isfinite(self.temperature) and 0.0 <= self.temperature <= 2.0):
            raise InvalidRequest(f"temperature must be between 0 and 2, got {self.temperature}")
        if self.top_p is not None and not (math.isfinite(self.top_p) and 0.0 <= self.top_p <= 1):
            raise InvalidRequest(f"top_p must be between 0 and 1, got {self.top_p}")
        if len(self.stop) > MAX_STOP_SEQUENCES:
            raise InvalidRequest(f"at most {MAX_STOP_SEQUENCES} stop sequences, got "
                                 f"{len(self.stop)}")
        for s in self.stop:
            if not s or len(s) > MAX_STOP_CHARS:
                raise InvalidRequest(f"a stop sequence must be 1..{MAX_STOP_CHARS} characters")
        if not (0.0 <= self.stream_interval_s <= 1.0):
            raise InvalidRequest("stream interval must be between 0 and 1 s")
        if self.messages and self.prompt:
            raise InvalidRequest("give either a prompt or chat messages, not both")
        return self


@dataclass
class GenerationStats:
    prompt_tokens: int = 0
    completion_tokens: int = 0
    ttft_s: float = 0.0
    total_s: float = 0.0
    finish_reason: str = ""
    energy_j: float = 0.0  # filled in by the agent from its energy meter
    energy_meter: str = ""
    # filled in by the agent: the model that served it and how long the request waited for
    # it to load on demand (several models per device; 0 when it was resident)
    model: str = ""
    sha256: str = ""
    load_wait_s: float = 0.0

    @property
    def joules_per_token(self) -> float:
        return self.energy_j / self.completion_tokens if self.completion_tokens else 0.0

    @property
    def decode_tokens_per_s(self) -> float:
        decode_time = self.total_s - self.ttft_s
        if self.completion_tokens <= 1 or decode_time <= 0:
            return 0.0
        return (self.completion_tokens - 1) / decode_time

    @property
    def prefill_tokens_per_s(self) -> float:
        return self.prompt_tokens / self.ttft_s if self.ttft_s > 0 else 0.0
