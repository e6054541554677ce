"""Calibration: the agent's Benchmark RPC feeds a per-device efficiency, and plans converge."""

from __future__ import annotations

import json
from collections.abc import Callable

from controller.services.context import Fleet
from tests.conftest import Cli, Result


def test_benchmark_then_calibrate_converges(cli: Cli, lab: Callable[..., Result]) -> None:
    lab("--devices", "1", "--profiles", "lab-pi5-8gb")
    assert cli("deploy", "tiny-llama", "--group", "lab").code == 0
    fleet = Fleet.open()
    device = fleet.inventory.get_device("lab-1")

    with fleet.client(device) as client:
        bench = client.benchmark(runs=2, max_tokens=8)
    # a lab device estimates energy from its profile's power figure, and says so
    assert bench.variant == "q4_k_m" and bench.energy_meter == "estimated"
    assert all(s.energy_j > 0 for s in bench.samples)
    assert len(bench.samples) == 2 * 3  # two runs of the three fixed prompts, raw
    assert all(s.completion_tokens > 0 and s.ttft_ms > 0 for s in bench.samples)
    assert bench.peak_rss_bytes > 20 * 1024 * 1024  # the worker holds the weights

    before = json.loads(cli("plan", "tiny-llama", "--group", "lab", "--json").out)["plans"][0]
    result = cli("device", "calibrate", "lab-1", "--runs", "2", "--max-tokens", "16", "--json")
    assert result.code == 0, result.err
    cal = json.loads(result.out)
    assert cal["decode_efficiency"] > 0
    after = json.loads(cli("plan", "tiny-llama", "--group", "lab", "--json").out)["plans"][0]
    chosen_before = next(c for c in before["candidates"] if c["variant"] == "q4_k_m")
    chosen_after = next(c for c in after["candidates"] if c["variant"] == "q4_k_m")
    measured = cal["measured_tokens_per_s"]
    assert chosen_after["measured_tokens_per_s"] == measured
    # Calibrated, the model reproduces the measurement at the benchmark's own context, and
    # the plan (which predicts at n_past = ctx/2, a longer KV read) lands close to it.
    assert abs(cal["predicted_after"] - measured) / measured < 0.01
    assert chosen_after["tokens_per_s"] != chosen_before["tokens_per_s"]
    assert abs(chosen_after["tokens_per_s"] - measured) / measured < 0.25
    assert Fleet.open().inventory.get_device("lab-1").decode_efficiency == cal["decode_efficiency"]


def test_calibrate_without_a_model_is_a_clear_error(cli: Cli, lab: Callable[..., Result]) -> None:
    lab("--devices", "1")
    result = cli("device", "calibrate", "lab-1")
    assert result.code == 1
    assert result.err.startswith("error: lab-1 has no active model")
