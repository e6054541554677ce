"""How far apart identical llama-cpp-python processes are: several processes load the same
GGUF file and make the same greedy tokens, interleaved (each round rotates their order), and
each process's CPU per request and decode rate are printed. No agent is involved.

This is the noise floor of every "agent vs direct" ratio on a machine: the agent's runtime
worker is one llama.cpp process and the baseline another, so a difference of this size
between two processes says nothing about the agent (bench/token_paths.py compares the paths
on one worker instead).

With ``--pairs`` it runs the agent benches' own statistic with the agent replaced by a second
identical llama-cpp-python process: runs of ``--reps`` pairs (both processes on the same
fresh prompt, the one that goes first alternating), each run's decode ratio and TTFT ratio
(the ratio of the two sides' medians), and how many runs hold 0.97. What an agent bench's
runs show beyond this spread is the agent's.

Usage: python bench/direct_spread.py [--processes 4] [--reps 10] [--tokens 256]
       python bench/direct_spread.py --pairs [--runs 5] [--reps 5] [--fresh-prompt-words 32]
                                     [--n-ctx 1024] [--cold-pairs]
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import os
import statistics
import tempfile
from pathlib import Path

from _agent_bench import (
    FRESH_WORDS,
    N_CTX,
    THREADS,
    CpuMeter,
    DirectProcess,
    Sample,
    add_cold_pairs_option,
    build_model,
    fresh_prompt,
    load_now,
    run_pairs,
    runs_holding,
    spread,
)


def runs_of_pairs(args: argparse.Namespace) -> None:
    """The agent benches' runs of pairs (``run_pairs``), both sides llama-cpp-python direct:
    the second process stands where the agent would."""
    load_at_start = load_now()
    with tempfile.TemporaryDirectory() as tmp, contextlib.ExitStack() as stack:
        model = build_model(Path(tmp), args.variant)
        first = DirectProcess(model, n_ctx=args.n_ctx)
        second = DirectProcess(model, n_ctx=args.n_ctx)
        stack.callback(first.close)
        stack.callback(second.close)

        def through_second(tokens: int, prompt: str) -> Sample:
            return second(tokens, prompt)[0]

        meter = CpuMeter(second.pid)  # its CPU figures are not reported here
        prompts = (fresh_prompt(i, args.fresh_prompt_words) for i in itertools.count())
        run_pairs(first, through_second, meter, 8, 1, prompts)  # warm both up
        runs = [run_pairs(first, through_second, meter, args.tokens, args.reps, prompts,
                          agent_first=run % 2 == 1, warm=not args.cold_pairs)
                for run in range(args.runs)]
    decode = [r.ratio for r in runs]
    ttft = [r.direct.ttft_ms / r.agent.ttft_ms for r in runs]
    print(f"direct_spread --pairs: tiny-llama {args.variant}, {args.tokens} tokens, {THREADS} "
          f"thread, two identical llama-cpp-python processes, {args.reps} pairs per run, a new "
          f"prompt of {args.fresh_prompt_words} words each pair"
          f"{'; cold pairs' if args.cold_pairs else ''}\n  load average (1/5/15 min) "
          f"{load_at_start} at the start, {load_now()} at the end, on {os.cpu_count()} CPUs")
    for k, (d, t) in enumerate(zip(decode, ttft, strict=True), 1):
        print(f"  run {k}: decode ratio {d:.3f}, TTFT ratio {t:.3f}")
    print(f"  decode ratio over {len(decode)} runs: {spread(decode, '.3f')}; "
          f"{runs_holding(decode)}")
    print(f"  TTFT ratio over {len(ttft)} runs: {spread(ttft, '.3f')}; {runs_holding(ttft)}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--processes", type=int, default=4)
    parser.add_argument("--reps", type=int, default=None,
                        help="rounds (default 10), or with --pairs pairs per run (default 5)")
    parser.add_argument("--tokens", type=int, default=256)
    parser.add_argument("--variant", default="q4_k_m")
    parser.add_argument("--pairs", action="store_true",
                        help="the agent benches' runs of pairs, both sides direct")
    parser.add_argument("--runs", type=int, default=5, help="with --pairs")
    parser.add_argument("--fresh-prompt-words", type=int, default=FRESH_WORDS,
                        help="with --pairs: a new prompt of this many words each pair")
    parser.add_argument("--n-ctx", type=int, default=N_CTX,
                        help="with --pairs: the context both processes load the model with")
    add_cold_pairs_option(parser)
    args = parser.parse_args()
    if args.pairs:
        args.reps = args.reps or 5
        runs_of_pairs(args)
        return
    args.reps = args.reps or 10

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
