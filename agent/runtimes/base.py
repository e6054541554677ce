"""What a generation reports, filled in by the runtime inside its worker process."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class GenerationStats:
    prompt_tokens: int = 0
    completion_tokens: int = 0
    ttft_s: float = 0.0
    total_s: float = 0.0
    finish_reason: str = ""
    energy_j: float = 0.0  # filled in by the agent from its energy meter
    energy_meter: str = ""

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
