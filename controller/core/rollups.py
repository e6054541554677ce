"""Rollup arithmetic (pure): a bucket's counts, sums and sketches, and merging a bucket
written earlier with new records. ``controller.adapters.telemetry_db`` stores the results."""

from __future__ import annotations

from typing import Any

from controller.core.sketch import Sketch
from controller.core.telemetry_records import RequestIn, SampleIn


def empty_request() -> dict[str, Any]:
    return {"requests": 0, "errors": 0, "cancelled": 0, "prompt_tokens": 0,
            "completion_tokens": 0, "energy_j": 0.0, "ttft_sum_ms": 0.0, "latency_sum_ms": 0.0,
            "ttft": Sketch(), "tps": Sketch()}


def add_request(acc: dict[str, Any], r: RequestIn) -> None:
    acc["requests"] += 1
    acc["errors"] += r.outcome == "error"
    acc["cancelled"] += r.outcome == "cancelled"
    acc["prompt_tokens"] += r.prompt_tokens
    acc["completion_tokens"] += r.completion_tokens
    acc["energy_j"] += r.energy_j
    if r.outcome == "ok":
        acc["ttft_sum_ms"] += r.ttft_ms
        acc["latency_sum_ms"] += r.total_ms
        acc["ttft"].add(r.ttft_ms)
        if r.completion_tokens > 1:
            acc["tps"].add(r.decode_tps)


def merge_request(old: Any, acc: dict[str, Any]) -> dict[str, Any]:
    ttft, tps = acc["ttft"], acc["tps"]
    out = {k: v for k, v in acc.items() if k not in ("ttft", "tps")}
    if old is not None:
        for k in out:
            out[k] += getattr(old, k)
        ttft = Sketch.decode(old.ttft_sketch).merge(ttft)
        tps = Sketch.decode(old.tps_sketch).merge(tps)
    out["ttft_sketch"] = ttft.encode()
    out["tps_sketch"] = tps.encode()
    return out


def empty_sample() -> dict[str, Any]:
    return {"samples": 0, "seconds": 0.0, "energy_j": 0.0, "cpu_sum": 0.0, "max_temp_c": None,
            "throttled_samples": 0, "worker_crashes": 0}


def add_sample(acc: dict[str, Any], s: SampleIn) -> None:
    acc["samples"] += 1
    acc["seconds"] += s.interval_s
    acc["energy_j"] += s.energy_j
    acc["cpu_sum"] += s.cpu_percent
    temp = max(s.temperatures_c.values(), default=None)
    if temp is not None:
        acc["max_temp_c"] = temp if acc["max_temp_c"] is None else max(acc["max_temp_c"], temp)
    acc["throttled_samples"] += s.throttled
    acc["worker_crashes"] = max(acc["worker_crashes"], s.worker_crashes)


def merge_sample(old: Any, acc: dict[str, Any]) -> dict[str, Any]:
    out = dict(acc)
    if old is None:
        return out
    for k in ("samples", "seconds", "energy_j", "cpu_sum", "throttled_samples"):
        out[k] += getattr(old, k)
    out["worker_crashes"] = max(out["worker_crashes"], old.worker_crashes)
    temps = [t for t in (old.max_temp_c, acc["max_temp_c"]) if t is not None]
    out["max_temp_c"] = max(temps) if temps else None
    return out
