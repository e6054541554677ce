"""How far apart identical llama-cpp-python processes are: several processes load the same
GGUF file and make the same greedy tokens, interleaved (each round rotates their order), and
each process's CPU per request and decode rate are printed. No agent is involved.

This is the noise floor of every "agent vs direct" ratio on a machine: the agent's runtime
worker is one llama.cpp process and the baseline another, so a difference of this size
between two processes says nothing about the agent (bench/token_paths.py compares the paths
on one worker instead).

Usage: python bench/direct_spread.py [--processes 4] [--reps 10] [--tokens 256]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import tempfile
from pathlib import Path

from _agent_bench import THREADS, DirectProcess, build_model, load_now


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--processes", type=int, default=4)
    parser.add_argument("--reps", type=int, default=10, help="rounds")
    parser.add_argument("--tokens", type=int, default=256)
    parser.add_argument("--variant", default="q4_k_m")
    args = parser.parse_args()

    load_at_start = load_now()
    results: list[list[tuple[float, float]]] = [[] for _ in range(args.processes)]
    with tempfile.TemporaryDirectory() as tmp, contextlib.ExitStack() as stack:
        model = build_model(Path(tmp), args.variant)
        procs = [DirectProcess(model) for _ in range(args.processes)]
        for p in procs:
            stack.callback(p.close)
            p(8)  # warm up
        order = list(range(args.processes))
        for i in range(args.reps):
            for k in order[i % len(order):] + order[:i % len(order)]:
                sample, cpu = procs[k](args.tokens)
                results[k].append((sample.decode_tps, cpu.worker))
    print(f"direct_spread: tiny-llama {args.variant}, {args.tokens} tokens, {THREADS} thread, "
          f"{args.processes} identical llama-cpp-python processes, {args.reps} rounds\n  load "
          f"average (1/5/15 min) {load_at_start} at the start, {load_now()} at the end, on "
          f"{os.cpu_count()} CPUs")
    medians = []
    for k, rows in enumerate(results):
        spent = sorted(c for _, c in rows)
        medians.append(statistics.median(spent))
        print(f"  process {k + 1}: CPU ms per request median {medians[-1]:6.1f} "
              f"(min {spent[0]:6.1f}, max {spent[-1]:6.1f}) | "
              f"{statistics.median(t for t, _ in rows):6.1f} tok/s")
    print(f"  slowest process's median CPU over the fastest's: {max(medians) / min(medians):.3f}")


if __name__ == "__main__":
    main()
