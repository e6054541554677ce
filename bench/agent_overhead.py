"""Decode tokens/s through the agent's gRPC Generate vs llama-cpp-python called directly,
same model, same run, same threads, same tokens (greedy). Prints the ratio (target >= 0.97)
and the TTFT overhead in ms.

The tiny test model decodes hundreds of tokens/s, so per-token overhead (a pipe message and
a gRPC message per token) weighs far more here than on a real 1-4B model at 5-40 tokens/s:
this is the worst case. Usage: python bench/agent_overhead.py [--tokens 256] [--reps 5]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

PROMPT = "The edge device reports"


def direct(llm: Any, tokens: int) -> tuple[float, float]:
    ids = llm.tokenize(PROMPT.encode(), add_bos=True)
    start = time.perf_counter()
    first = 0.0
    n = 0
    for _token in llm.generate(ids, temp=0.0, top_k=40, top_p=0.95, reset=True):
        now = time.perf_counter()
        if n == 0:
            first = now - start
        n += 1
        if n >= tokens:
            break
    total = time.perf_counter() - start
    return (n - 1) / (total - first), first * 1000


def through_agent(port: int, tokens: int) -> tuple[float, float]:
    """Measured where an app sees it: at the gRPC client, from the request to each event."""
    from controller.adapters.agent_client import GrpcAgentClient

    with GrpcAgentClient("bench", "127.0.0.1", port, 300) as client:
        start = time.perf_counter()
        stamps = [time.perf_counter() for e in client.stream(PROMPT, tokens)
                  if not e.HasField("summary")]
    first, last = stamps[0] - start, stamps[-1] - start
    return (len(stamps) - 1) / (last - first), first * 1000


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tokens", type=int, default=256)
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--variant", default="q4_k_m")
    args = parser.parse_args()
    from agent.rpc import agent_pb2 as pb
    from agent.store import sha256_file
    from controller import testmodels
    from controller.adapters.agent_client import GrpcAgentClient

    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        f16 = d / "tiny-f16.gguf"
        testmodels.write_tiny_llama_f16(f16)
        model = d / f"tiny-{args.variant}.gguf"
        testmodels.quantize_gguf(f16, model, args.variant)
        sha = sha256_file(model)
        data = d / "agent"
        (data / "store" / "incoming").mkdir(parents=True)
        (data / "store" / "incoming" / sha).write_bytes(model.read_bytes())
        port_file = d / "port"
        threads = 1
        agent = subprocess.Popen(
            [sys.executable, "-m", "agent.cli", "serve", "--listen", "127.0.0.1:0",
             "--data-dir", str(data), "--port-file", str(port_file),
             "--threads", str(threads)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=ROOT)
        try:
            deadline = time.monotonic() + 60
            while not port_file.exists() and time.monotonic() < deadline:
                time.sleep(0.05)
            port = int(port_file.read_text())
            with GrpcAgentClient("bench", "127.0.0.1", port, 300) as client:
                client.load_model(pb.LoadModelRequest(
                    sha256=sha, name="tiny-llama", variant=args.variant, format="gguf",
                    n_ctx=512, size_bytes=model.stat().st_size))
            from llama_cpp import Llama

            llm = Llama(model_path=str(model), n_ctx=512, n_threads=threads,
                        n_threads_batch=threads, verbose=False)
            direct(llm, 8)  # warm both up
            through_agent(port, 8)
            direct_runs, agent_runs = [], []
            for _ in range(args.reps):  # alternate so both see the same machine state
                direct_runs.append(direct(llm, args.tokens))
                agent_runs.append(through_agent(port, args.tokens))
            llm.close()
        finally:
            agent.terminate()
            agent.wait(timeout=30)
    d_tps = statistics.median(r[0] for r in direct_runs)
    a_tps = statistics.median(r[0] for r in agent_runs)
    d_ttft = statistics.median(r[1] for r in direct_runs)
    a_ttft = statistics.median(r[1] for r in agent_runs)
    print(f"agent_overhead: tiny-llama {args.variant}, {args.tokens} tokens, {args.reps} reps, "
          f"{threads} thread, median")
    print(f"  llama-cpp-python direct : {d_tps:8.1f} tok/s decode, TTFT {d_ttft:6.1f} ms")
    print(f"  agent gRPC Generate     : {a_tps:8.1f} tok/s decode, TTFT {a_ttft:6.1f} ms")
    print(f"  ratio {a_tps / d_tps:.3f} (target >= 0.97); TTFT overhead "
          f"{a_ttft - d_ttft:+.1f} ms (client side: gRPC + worker pipe)")


if __name__ == "__main__":
    main()
