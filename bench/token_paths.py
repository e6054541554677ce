"""Every token path on ONE agent worker, interleaved: llama-cpp-python direct, gRPC `Generate`,
the OpenAI endpoint read by the standard library, and the same read by the `openai` SDK.

bench/agent_overhead.py and bench/serving.py each start their own agent, so each compares
llama.cpp in one process (the worker) against llama.cpp in another (the baseline), and
identical llama.cpp processes differ in CPU per token by 3-8 % on a shared host (see
docs/serving.md, Measured): comparing the two benches' numbers mixes that per-process factor
with the paths' costs. Here one worker serves all three paths, a round is one direct request
and one request per path (the paths' order rotating), so the paths differ only by what they
really do. Per path: its rate over direct's (each run: the ratio of medians), the worker's,
agent's and client's CPU per request, and the worker's involuntary context switches per
request (other work taking its core).

Usage: python bench/token_paths.py [--tokens 256] [--reps 5] [--runs 3]
"""

from __future__ import annotations

import argparse
import functools
import os
import statistics
import tempfile
from pathlib import Path

from _agent_bench import (
    PROMPT,
    THREADS,
    CpuMeter,
    DirectProcess,
    Reader,
    agent_with_model,
    build_model,
    load_now,
    worker_cpus,
    worker_pid,
)
from agent_overhead import grpc_reader
from serving import free_port, http_reader, openai_reader


def involuntary_switches(pid: int) -> int:
    try:
        for line in open(f"/proc/{pid}/status"):  # noqa: SIM115
            if line.startswith("nonvoluntary_ctxt_switches"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def measure(paths: dict[str, Reader], direct: DirectProcess, meter: CpuMeter,
            worker: int, tokens: int, rounds: int) -> dict[str, list[tuple[float, ...]]]:
    """Per path (and "direct"), per round: (tok/s, worker, agent, client CPU ms, switches)."""
    out: dict[str, list[tuple[float, ...]]] = {k: [] for k in ("direct", *paths)}
    names = list(paths)
    for i in range(rounds):
        before = involuntary_switches(direct.pid)
        sample, cpu = direct(tokens)
        out["direct"].append((sample.decode_tps, cpu.worker, 0.0, 0.0,
                              involuntary_switches(direct.pid) - before))
        for name in names[i % len(names):] + names[:i % len(names)]:
            before = involuntary_switches(worker)
            sample, cpu = meter.measure(functools.partial(paths[name], tokens, PROMPT))
            out[name].append((sample.decode_tps, cpu.worker, cpu.agent, cpu.client,
                              involuntary_switches(worker) - before))
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tokens", type=int, default=256)
    parser.add_argument("--reps", type=int, default=5, help="rounds per run")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--variant", default="q4_k_m")
    args = parser.parse_args()
    from controller.adapters.agent_client import GrpcAgentClient

    port = free_port()
    load_at_start = load_now()
    runs: list[dict[str, list[tuple[float, ...]]]] = []
    with tempfile.TemporaryDirectory() as tmp:
        model = build_model(Path(tmp), args.variant)
        with agent_with_model(model, args.variant, ("--openai-listen", f"127.0.0.1:{port}")
                              ) as agent, \
                GrpcAgentClient("bench", "127.0.0.1", agent.port, 300) as client:
            paths = {"gRPC": grpc_reader(client), "OpenAI, stdlib reader": http_reader(port),
                     "OpenAI, openai SDK": openai_reader(port)}
            direct = DirectProcess(model, worker_cpus(agent.pid))
            try:
                meter = CpuMeter(agent.pid)
                measure(paths, direct, meter, 0, 8, 1)  # warm every path up
                worker = worker_pid(agent.pid)
                runs = [measure(paths, direct, meter, worker, args.tokens, args.reps)
                        for _ in range(args.runs)]
            finally:
                direct.close()
    print(f"token_paths: tiny-llama {args.variant}, {args.tokens} tokens, {THREADS} thread, one "
          f"worker for every path, {args.reps} rounds per run, {args.runs} runs\n  load average"
          f" (1/5/15 min) {load_at_start} at the start, {load_now()} at the end, on "
          f"{os.cpu_count()} CPUs")

    def med(name: str, i: int, run: dict[str, list[tuple[float, ...]]]) -> float:
        return statistics.median(x[i] for x in run[name])

    for name in ("direct", *paths):
        every = [x for run in runs for x in run[name]]
        w, a, c = (statistics.median(x[i] for x in every) for i in (1, 2, 3))
        line = f"  {name:22s} CPU ms per request: worker {w:6.1f} agent {a:5.1f} client {c:5.1f}"
        line += f", switches {statistics.median(x[4] for x in every):4.0f}"
        if name == "direct":
            print(f"{line} | {statistics.median(x[0] for x in every):6.1f} tok/s")
            continue
        ratios = sorted(med(name, 0, r) / med("direct", 0, r) for r in runs)
        print(f"{line} | rate"
              f" over direct, each run: {' '.join(f'{r:.3f}' for r in ratios)}")


if __name__ == "__main__":
    main()
