"""The agent's Benchmark RPC: the fixed prompt set run on the active model, each run's
generation stats kept (``fleet device calibrate`` fits the device's speed from them)."""

from __future__ import annotations

from collections.abc import Callable, Generator
from dataclasses import dataclass
from typing import Any

from agent.runtimes.base import GenerationStats
from agent.store import ModelRecord
from agent.workers import Worker

# The fixed benchmark prompt set: short, medium and long prompts, as in llama-bench's pp/tg mix.
BENCH_PROMPTS = (
    "Hello",
    "Summarise the state of the kiosk fleet in one sentence.",
    " ".join(["The edge device reports its temperature, power and memory."] * 3),
)

Generate = Callable[[str, int, float], Generator[tuple[str, Any], None, None]]


@dataclass(frozen=True)
class BenchSample:
    run: int
    prompt_index: int
    stats: GenerationStats


@dataclass(frozen=True)
class BenchResult:
    record: ModelRecord
    load_seconds: float
    peak_rss_bytes: int
    samples: list[BenchSample]


def run_benchmark(record: ModelRecord, worker: Worker, generate: Generate, runs: int,
                  max_tokens: int, prompts: list[str]) -> BenchResult:
    """Run ``prompts`` (default ``BENCH_PROMPTS``) ``runs`` times through ``generate`` (the
    agent's own path, so every request is in its telemetry); bounded by the caller."""
    samples = []
    for run in range(runs):
        for index, prompt in enumerate(prompts or BENCH_PROMPTS):
            stats = GenerationStats()
            for kind, value in generate(prompt, max_tokens, 0.0):
                if kind == "done":
                    stats = value
            samples.append(BenchSample(run, index, stats))
    return BenchResult(record, worker.load_seconds, worker.peak_rss_bytes(), samples)
