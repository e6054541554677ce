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


@dataclass(frozen=True)
class WaveGates:
    """Limits on what a wave's devices served between waves (collected telemetry)."""

    max_p95_ttft_ms: float = 0.0  # 0: not checked
    max_error_rate: float = 0.0  # share of requests, 0..1; 0: not checked
    min_requests: int = 1  # a device that served fewer is not judged (said so)

    @property
    def any(self) -> bool:
        return bool(self.max_p95_ttft_ms or self.max_error_rate)


@dataclass(frozen=True)
class ServedWindow:
    """What one device served since its wave finished."""

    device: str
    requests: int
    errors: int
    ttft_p95_ms: float | None


def judge_wave(gates: WaveGates, served: list[ServedWindow]) -> tuple[str, str]:
    """(problem, note): problem names every device that missed a limit, with its numbers
    (empty when none did); note says which devices had too little traffic to be judged."""
    misses, unjudged = [], []
    for s in served:
        if s.requests < max(1, gates.min_requests):
            unjudged.append(f"{s.device} ({s.requests} requests)")
            continue
        if gates.max_p95_ttft_ms and s.ttft_p95_ms is not None and (
                s.ttft_p95_ms > gates.max_p95_ttft_ms):
            misses.append(f"{s.device} p95 TTFT {s.ttft_p95_ms:.0f} ms > --wave-max-p95-ttft "
                          f"{gates.max_p95_ttft_ms:g} ({s.requests} requests)")
        rate = s.errors / s.requests
        if gates.max_error_rate and rate > gates.max_error_rate:
            misses.append(f"{s.device} error rate {rate:.1%} > --wave-max-error-rate "
                          f"{gates.max_error_rate:.1%} ({s.errors} of {s.requests})")
    note = f"not judged, too little traffic: {', '.join(unjudged)}" if unjudged else ""
    return "; ".join(misses), note
