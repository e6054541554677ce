"""Bounds on what one client can make the agent do at once, and how much it may send.

- ``max_concurrent_rpcs``: calls in progress per gRPC listener; one more is refused at once
  with ``RESOURCE_EXHAUSTED`` (gRPC's ``maximum_concurrent_rpcs``) instead of queueing
  behind a flood. A streamed generation counts while it streams.
- ``max_message_bytes`` / ``inference_max_message_bytes``: the largest request message each
  gRPC listener reads (larger: ``RESOURCE_EXHAUSTED`` before it is parsed). The management
  listener carries the controller's orders and prompts; the local inference listener carries
  the apps' prompts and Open Inference Protocol tensors.
- ``max_prompt_bytes``: a prompt (or the prompts of a benchmark, or the rendered messages of a
  chat) longer than this is refused (``INVALID_ARGUMENT``) before it reaches the tokenizer,
  whichever API it came by.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from agent.errors import InvalidRequest

MIB = 1024 * 1024


@dataclass(frozen=True)
class AgentLimits:
    max_concurrent_rpcs: int = 32
    max_message_bytes: int = 4 * MIB
    inference_max_message_bytes: int = 4 * MIB
    max_prompt_bytes: int = 1 * MIB

    def check(self) -> AgentLimits:
        """Raises ValueError naming the first limit out of range."""
        if not 1 <= self.max_concurrent_rpcs <= 1024:
            raise ValueError(f"--max-concurrent-rpcs {self.max_concurrent_rpcs} is not 1..1024")
        for flag, value in (("--max-message-mib", self.max_message_bytes),
                            ("--inference-max-message-mib", self.inference_max_message_bytes)):
            if not 1024 <= value <= 256 * MIB:
                raise ValueError(f"{flag} {value / MIB:g} is not between 0.001 and 256")
        if not 1 <= self.max_prompt_bytes <= 64 * MIB:
            raise ValueError(f"--max-prompt-kib {self.max_prompt_bytes / 1024:g} is not "
                             "1..65536")
        return self

    def server_options(self, inference: bool = False) -> list[tuple[str, Any]]:
        size = self.inference_max_message_bytes if inference else self.max_message_bytes
        return [("grpc.max_receive_message_length", size)]

    def check_prompt(self, *texts: str) -> None:
        """Refuse prompts over ``max_prompt_bytes`` in all (UTF-8), before tokenising."""
        size = sum(len(t.encode("utf-8", "surrogatepass")) for t in texts)
        if size > self.max_prompt_bytes:
            raise InvalidRequest(f"the prompt is {size} bytes; this agent accepts at most "
                                 f"{self.max_prompt_bytes} (fleet-agent --max-prompt-kib)")
