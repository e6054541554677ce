"""Health gates on what a new model measures on the device, not only on whether it answers.

The limits a user plans with (``--min-tps``, ``--max-ttft``) are checked twice: on the
prediction when a variant is chosen, and on the device's own measurement after the model is
loaded on trial. A model that misses a gate is rolled back like one that crashed.
"""

from __future__ import annotations

from dataclasses import dataclass

# fewer decoded tokens than this say nothing reliable about decode speed
MIN_TOKENS_FOR_SPEED = 4


@dataclass(frozen=True)
class Gates:
    min_tokens_per_s: float = 0.0  # 0: not checked
    max_ttft_ms: float = 0.0
    max_joules_per_token: float = 0.0
    prompt_tokens: int = 128  # the prompt length TTFT is judged for

    @property
    def any(self) -> bool:
        return bool(self.min_tokens_per_s or self.max_ttft_ms or self.max_joules_per_token)


@dataclass(frozen=True)
class Measurement:
    prompt_tokens: int
    completion_tokens: int
    decode_tokens_per_s: float
    ttft_ms: float
    joules_per_token: float
    energy_meter: str  # "none": no meter, the energy gate cannot be judged


def judge(gates: Gates, m: Measurement) -> str:
    """Empty when every gate passes, else each miss with its numbers."""
    misses = []
    if gates.min_tokens_per_s and m.completion_tokens >= MIN_TOKENS_FOR_SPEED and (
            m.decode_tokens_per_s < gates.min_tokens_per_s):
        misses.append(f"measured decode {m.decode_tokens_per_s:.1f} tok/s < --min-tps "
                      f"{gates.min_tokens_per_s:g}")
    if gates.max_ttft_ms and m.ttft_ms > gates.max_ttft_ms:
        misses.append(f"measured TTFT {m.ttft_ms:.0f} ms ({m.prompt_tokens}-token prompt) > "
                      f"--max-ttft {gates.max_ttft_ms:g}")
    if gates.max_joules_per_token and m.energy_meter != "none" and (
            m.joules_per_token > gates.max_joules_per_token):
        misses.append(f"measured {m.joules_per_token:.3f} J/token ({m.energy_meter}) > "
                      f"--max-j-per-token {gates.max_joules_per_token:g}")
    return "; ".join(misses)


def describe(m: Measurement) -> str:
    energy = f", {m.joules_per_token:.3f} J/token ({m.energy_meter})" if (
        m.energy_meter != "none") else ""
    return f"measured {m.decode_tokens_per_s:.1f} tok/s, TTFT {m.ttft_ms:.0f} ms{energy}"
