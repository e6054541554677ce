"""`fleet device calibrate`: run the agent's Benchmark on the active model, compare with the
prediction, and store the device's decode efficiency so later plans predict what it measured."""

from __future__ import annotations

import statistics
from dataclasses import dataclass

from agent.rpc import agent_pb2 as pb
from controller.adapters.tables import Measurement
from controller.core import cost
from controller.errors import FleetError, UsageError
from controller.services.context import Fleet, profile_from_probe
from controller.services.models import ensure_model


@dataclass(frozen=True)
class Calibration:
    device: str
    model: str
    variant: str
    samples: int
    measured_tokens_per_s: float
    predicted_before: float
    predicted_after: float
    decode_efficiency: float
    ttft_ms: float
    peak_rss_bytes: int
    load_seconds: float


def _median(values: list[float]) -> float:
    return statistics.median(values) if values else 0.0


def calibrate(fleet: Fleet, name: str, runs: int = 3, max_tokens: int = 64) -> Calibration:
    if not 1 <= runs <= 100 or not 2 <= max_tokens <= 512:
        raise UsageError("--runs must be 1..100 and --max-tokens 2..512",
                         hint="try --runs 3 --max-tokens 64")
    device = fleet.inventory.get_device(name)
    with fleet.client(device, timeout_s=30.0) as client:
        probed = client.get_profile()
        active = next((m for m in client.list_models() if m.active), None)
        if active is None:
            raise FleetError(f"{name} has no active model to benchmark",
                             hint=f"deploy one first: fleet deploy MODEL --device {name}")
        bench: pb.BenchmarkResponse = client.benchmark(runs, max_tokens)
    model = ensure_model(fleet, active.name)
    variant = model.variant(active.variant)
    if variant is None:
        raise FleetError(f"{name} runs {active.name} {active.variant}, which the catalog "
                         "does not list", hint="`fleet model show` lists the variants")
    decode = [s.decode_tokens_per_s for s in bench.samples if s.completion_tokens > 1]
    if not decode:
        raise FleetError(f"{name}: the benchmark produced no decode samples",
                         hint="the model stopped at once; retry with more --max-tokens")
    measured = _median(decode)
    n_past = int(_median([s.prompt_tokens + s.completion_tokens / 2 for s in bench.samples]))
    profile = profile_from_probe(fleet, device, probed)
    before = cost.decode_tokens_per_s(model.arch, variant, profile, n_past)
    roof = cost.bandwidth_roof_tokens_per_s(model.arch, variant, profile, n_past)
    eta = measured / roof if roof > 0 else 0.0
    ttft = _median([s.ttft_ms for s in bench.samples])
    fleet.inventory.record_measurement(Measurement(
        device=name, model=model.name, variant=variant.name, sha256=bench.sha256,
        source="benchmark", samples=len(bench.samples), decode_tokens_per_s=measured,
        prefill_tokens_per_s=_median([s.prefill_tokens_per_s for s in bench.samples]),
        ttft_ms=ttft, predicted_tokens_per_s=before, decode_efficiency=eta,
        peak_rss_bytes=bench.peak_rss_bytes))
    if eta > 0:
        fleet.inventory.update_device(name, decode_efficiency=eta)
    return Calibration(name, model.name, variant.name, len(bench.samples), measured, before,
                       eta * roof, eta, ttft, bench.peak_rss_bytes, bench.load_seconds)
