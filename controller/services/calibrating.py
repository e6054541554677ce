"""`fleet device calibrate`: run the agent's Benchmark on the active model, compare with the
prediction, and store the device's decode efficiency so later plans predict what it measured.

A passively cooled board (a Pi 5 without a fan) throttles within minutes, so on real hardware
calibration keeps benchmarking for ``sustain_s`` (default 5 minutes) and calibrates on the
last third of that window, the speed the board holds; it reports the first round's speed too
and their ratio (the thermal factor). An emulated lab device has no thermals to wait for.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from agent.rpc import agent_pb2 as pb
from controller.adapters.tables import Measurement
from controller.core import cost, speed
from controller.errors import FleetError, UsageError
from controller.services.context import Fleet, profile_from_probe
from controller.services.models import ensure_model

SUSTAIN_S = 300.0  # a Pi 5 without a cooler reaches its throttle point within minutes
MAX_SUSTAIN_S = 3600.0


@dataclass(frozen=True)
class Calibration:
    device: str
    model: str
    variant: str
    samples: int
    measured_tokens_per_s: float  # sustained: the last third of the benchmark window
    predicted_before: float
    predicted_after: float
    decode_efficiency: float
    ttft_ms: float
    peak_rss_bytes: int
    load_seconds: float
    cold_tokens_per_s: float = 0.0  # the first round's median
    thermal_factor: float = 1.0  # sustained / cold (below 1: the device throttled)
    seconds: float = 0.0  # how long the benchmark ran
    rounds: int = 1


def _median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else 0.0


@dataclass(frozen=True)
class Round:
    """One Benchmark call: when it ended (seconds since the first started) and its samples."""

    ended_s: float
    response: pb.BenchmarkResponse


def decode_speeds(r: Round) -> list[float]:
    return [s.decode_tokens_per_s for s in r.response.samples if s.completion_tokens > 1]


def sustained(rounds: Sequence[Round]) -> tuple[float, float]:
    """(cold, sustained) decode tokens/s: the first round's median and the median of the
    rounds that ended in the last third of the window (the last round at least)."""
    cold = _median(decode_speeds(rounds[0]))
    end = rounds[-1].ended_s
    tail = [r for r in rounds if r.ended_s >= end * 2 / 3] or [rounds[-1]]
    return cold, _median([v for r in tail for v in decode_speeds(r)])


def run_rounds(benchmark: Callable[[], pb.BenchmarkResponse], sustain_s: float,
               clock: Callable[[], float] = time.monotonic) -> list[Round]:
    """Benchmark once, then again until ``sustain_s`` seconds have passed."""
    start = clock()
    rounds: list[Round] = []
    while not rounds or clock() - start < sustain_s:
        response = benchmark()
        rounds.append(Round(clock() - start, response))
    return rounds


def calibrate(fleet: Fleet, name: str, runs: int = 3, max_tokens: int = 64,
              sustain_s: float | None = None) -> Calibration:
    if not 1 <= runs <= 100 or not 2 <= max_tokens <= 512:
        raise UsageError("--runs must be 1..100 and --max-tokens 2..512",
                         hint="try --runs 3 --max-tokens 64")
    if sustain_s is not None and not 0 <= sustain_s <= MAX_SUSTAIN_S:
        raise UsageError(f"--sustain must be 0..{MAX_SUSTAIN_S:.0f} seconds",
                         hint="300 seconds is long enough to see a passive board throttle")
    device = fleet.inventory.get_device(name)
    with fleet.client(device, timeout_s=30.0) as client:
        probed = client.get_profile()
        active = next((m for m in client.list_models() if m.active), None)
        if active is None:
            raise FleetError(f"{name} has no active model to benchmark",
                             hint=f"deploy one first: fleet deploy MODEL --device {name}")
        window = (0.0 if probed.emulated else SUSTAIN_S) if sustain_s is None else sustain_s
        rounds = run_rounds(lambda: client.benchmark(runs, max_tokens), window)
    model = ensure_model(fleet, active.name)
    variant = model.variant(active.variant)
    if variant is None:
        raise FleetError(f"{name} runs {active.name} {active.variant}, which the catalog "
                         "does not list", hint="`fleet model show` lists the variants")
    if not any(decode_speeds(r) for r in rounds):
        raise FleetError(f"{name}: the benchmark produced no decode samples",
                         hint="the model stopped at once; retry with more --max-tokens")
    cold, measured = sustained(rounds)
    samples = [s for r in rounds for s in r.response.samples]
    last = rounds[-1].response
    n_past = int(_median([s.prompt_tokens + s.completion_tokens / 2 for s in samples]))
    profile = profile_from_probe(fleet, device, probed)
    before = cost.decode_tokens_per_s(model.arch, variant, profile, n_past)
    roof = cost.bandwidth_roof_tokens_per_s(model.arch, variant, profile, n_past)
    eta = measured / roof if roof > 0 else 0.0
    ttft = _median([s.ttft_ms for s in samples])
    fleet.inventory.record_measurement(Measurement(
        device=name, model=model.name, variant=variant.name, sha256=last.sha256,
        source="benchmark", samples=len(samples), decode_tokens_per_s=measured,
        prefill_tokens_per_s=_median([s.prefill_tokens_per_s for s in samples]),
        ttft_ms=ttft, predicted_tokens_per_s=before, decode_efficiency=eta,
        peak_rss_bytes=max(r.response.peak_rss_bytes for r in rounds)))
    if eta > 0:  # kept with the backend it was measured on (profiles.overlay_probe)
        fleet.inventory.update_device(name, decode_efficiency=eta,
                                      decode_efficiency_backend=speed.backend_of(profile))
    return Calibration(name, model.name, variant.name, len(samples), measured, before,
                       eta * roof, eta, ttft, max(r.response.peak_rss_bytes for r in rounds),
                       rounds[0].response.load_seconds, cold,
                       measured / cold if cold > 0 else 1.0, rounds[-1].ended_s, len(rounds))
