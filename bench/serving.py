"""Decode tokens/s and TTFT through the agent's OpenAI-compatible endpoint (streamed
/v1/completions read by the real `openai` client) vs llama-cpp-python called directly: same
model, same invocation, same threads, same tokens (greedy), alternating, each pair on a prompt
new to both sides. Prints each run's decode and TTFT ratios (target >= 0.97) and how many runs
hold it, the spread over runs and over every pair, the first token's path outside the runtime
and the reader's own share of it (bench/_raw_sse.py), the load average and the CPU each
process spent per request (bench/_agent_bench.py).

The tiny model decodes hundreds of tokens/s, the worst case for per-token overhead (see
bench/agent_overhead.py). ``--stream-interval-ms 0`` sends every token as its own event.
``--client http`` reads the stream with the standard library instead of the `openai` SDK,
which separates the endpoint's cost from the SDK's (pydantic objects per chunk).

Then, unless ``--no-adapter-swap``, the LoRA adapter swap on a loaded base against a full
model reload (bench/adapter_swap.py, run as part of this bench).

Usage: python bench/serving.py [--tokens 256] [--reps 5] [--runs 5] [--client openai|http]
                               [--stream-interval-ms MS] [--runtime-cpus auto|off|LIST]
                               [--fresh-prompt-words 32] [--n-ctx 1024] [--cold-pairs]
                               [--no-adapter-swap]
"""

from __future__ import annotations

import argparse
import http.client
import json
import math
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _agent_bench import (
    PROMPT,
    SERVED,
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
    spread,
)
from _raw_sse import reader_cost


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def openai_reader(port: int) -> Reader:
    import openai

    client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="bench",
                           max_retries=0, timeout=300)

    def through_endpoint(tokens: int, prompt: str = PROMPT) -> Sample:
        start = time.perf_counter()
        first = last = 0.0
        completion = 0
        worker = math.nan
        stream = client.completions.create(
            model=SERVED, prompt=prompt, max_tokens=tokens, temperature=0,
            stream=True, stream_options={"include_usage": True})
        for chunk in stream:
            if chunk.usage is not None:
                completion = chunk.usage.completion_tokens
            timings = (chunk.model_extra or {}).get("timings")
            if timings:
                worker = timings["ttft_ms"]
            if chunk.choices and chunk.choices[0].text:
                last = time.perf_counter()
                first = first or last
        return client_sample(start, first, last, completion, worker)

    return through_endpoint


def http_reader(port: int) -> Reader:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=300)

    def through_endpoint(tokens: int, prompt: str = PROMPT) -> Sample:
        body = json.dumps({"model": SERVED, "prompt": prompt, "max_tokens": tokens,
                           "temperature": 0, "stream": True,
                           "stream_options": {"include_usage": True}})
        start = time.perf_counter()
        first = last = 0.0
        completion = 0
        worker = math.nan
        conn.request("POST", "/v1/completions", body, {"Content-Type": "application/json"})
        for line in conn.getresponse():
            if not line.startswith(b"data: {"):
                continue
            event = json.loads(line[6:])
            if event.get("usage"):
                completion = event["usage"]["completion_tokens"]
            if event.get("timings"):
                worker = event["timings"]["ttft_ms"]
            if event["choices"] and event["choices"][0]["text"]:
                last = time.perf_counter()
                first = first or last
        return client_sample(start, first, last, completion, worker)

    return through_endpoint


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tokens", type=int, default=256)
    parser.add_argument("--reps", type=int, default=5, help="direct/agent pairs per run")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--variant", default="q4_k_m")
    add_agent_options(parser)
    parser.add_argument("--client", choices=("openai", "http"), default="openai")
    parser.add_argument("--no-adapter-swap", action="store_true",
                        help="skip the adapter swap vs full reload measurement")
    args = parser.parse_args()

    port = free_port()
    extra = ("--openai-listen", f"127.0.0.1:{port}", *agent_options(args))
    load_at_start = load_now()
    with tempfile.TemporaryDirectory() as tmp:
        model = build_model(Path(tmp), args.variant)
        with agent_with_model(model, args.variant, extra, args.n_ctx) as agent:
            reader = openai_reader if args.client == "openai" else http_reader
            through_endpoint = reader(port)
            runs = measure_runs(model, agent, through_endpoint, args.tokens, args.reps, args.runs,
                                args.fresh_prompt_words, args.n_ctx, not args.cold_pairs)
            setup = agent_setup(args, agent)
        reader_own = reader_cost(reader, hold_s=runs[0].direct.ttft_ms / 1000)
    report(f"serving: {args.tokens} tokens, {THREADS} thread, "
           f"{args.reps} pairs per run (medians); streamed /v1/completions measured at the "
           f"client ({args.client})\n  {setup}", "OpenAI endpoint", runs, load_at_start)
    print(f"  the reader's own share of that path (the same client against a server that does no "
          f"work, each request held as long as a direct TTFT): {spread(reader_own, '.1f')} ms")
    if not args.no_adapter_swap:
        print(flush=True)
        swap = Path(__file__).resolve().parent / "adapter_swap.py"
        subprocess.run([sys.executable, str(swap), "--reloads", "3", "--swaps", "30"],
                       check=True)


if __name__ == "__main__":
    main()
