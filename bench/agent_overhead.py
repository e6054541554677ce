"""Decode tokens/s through the agent's gRPC Generate vs llama-cpp-python called directly,
same model, same invocation, same threads, same tokens (greedy), alternating. Prints each
run's decode and TTFT ratios (target >= 0.97) and how many runs hold it, the spread over runs
and over every pair, the first token's path outside the runtime, the load average and the CPU
each process spent per request (bench/_agent_bench.py). Each pair's prompt is new to both
sides (an app's new question, a real prefill); ``--fresh-prompt-words 0`` repeats one short
prompt, whose KV cache both sides reuse.

The tiny test model decodes hundreds of tokens/s, so per-token overhead (a pipe message and
a gRPC message per token) weighs far more here than on a real 1-4B model at 5-40 tokens/s:
this is the worst case. ``--stream-interval-ms 0`` sends every token alone (what the agent
did before streamed text was coalesced), to compare.

Usage: python bench/agent_overhead.py [--tokens 256] [--reps 5] [--runs 5]
                                      [--stream-interval-ms MS] [--runtime-cpus auto|off|LIST]
                                      [--fresh-prompt-words 32] [--n-ctx 1024] [--cold-pairs]
"""

from __future__ import annotations

import argparse
import math
import tempfile
import time
from pathlib import Path

from _agent_bench import (
    PROMPT,
    THREADS,
    Reader,
    Sample,
    add_agent_options,
    agent_options,
    agent_setup,
    agent_with_model,
    build_model,
    client_sample,
    load_now,
    measure_runs,
    report,
)

from controller.adapters.agent_client import GrpcAgentClient


def grpc_reader(client: GrpcAgentClient) -> Reader:
    """gRPC ``Generate`` streamed, timed where the app sees the text."""

    def through_agent(tokens: int, prompt: str = PROMPT) -> Sample:
        start = time.perf_counter()
        first = last = 0.0
        completion = 0
        worker = math.nan
        for event in client.stream(prompt, tokens):
            if event.HasField("summary"):
                completion, worker = event.summary.completion_tokens, event.summary.ttft_ms
                continue
            last = time.perf_counter()
            first = first or last
        return client_sample(start, first, last, completion, worker)

    return through_agent


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tokens", type=int, default=256)
    parser.add_argument("--reps", type=int, default=5, help="direct/agent pairs per run")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--variant", default="q4_k_m")
    add_agent_options(parser)
    args = parser.parse_args()

    extra = agent_options(args)
    load_at_start = load_now()
    with tempfile.TemporaryDirectory() as tmp:
        model = build_model(Path(tmp), args.variant)
        with agent_with_model(model, args.variant, extra, args.n_ctx) as agent, \
                GrpcAgentClient("bench", "127.0.0.1", agent.port, 300) as client:

            through_agent = grpc_reader(client)
            runs = measure_runs(model, agent, through_agent, args.tokens, args.reps, args.runs,
                                args.fresh_prompt_words, args.n_ctx, not args.cold_pairs)
            setup = agent_setup(args, agent)
    report(f"agent_overhead: {args.tokens} tokens, {THREADS} "
           f"thread, {args.reps} pairs per run (medians); gRPC Generate measured at the "
           f"client\n  {setup}", "agent gRPC", runs, load_at_start)


if __name__ == "__main__":
    main()
