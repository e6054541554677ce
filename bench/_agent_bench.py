"""Shared by the token-path benchmarks: the tiny model, a real agent process with it loaded,
the llama-cpp-python baseline, and the spread over runs.

A "run" is ``reps`` direct/agent pairs, alternated so both see the same machine state; its
result is the median of each side and their ratio, and the ratio of each side's best pair
(as ``timeit`` advises: slower repeats are other processes interfering, which on a shared
machine hits the three processes of the agent path more often than the one of the direct
path). Several runs in one invocation show the spread (min/median/max), since one run on a
shared 2-core machine says little.
"""

from __future__ import annotations

import contextlib
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

PROMPT = "The edge device reports"
THREADS = 1


@dataclass(frozen=True)
class Sample:
    decode_tps: float
    ttft_ms: float


@dataclass(frozen=True)
class RunResult:
    direct: Sample  # medians of the run
    agent: Sample
    best_ratio: float  # the agent's best decode rate over the direct path's best

    @property
    def ratio(self) -> float:
        return self.agent.decode_tps / self.direct.decode_tps


def build_model(d: Path, variant: str) -> Path:
    from controller import testmodels

    f16 = d / "tiny-f16.gguf"
    testmodels.write_tiny_llama_f16(f16)
    model = d / f"tiny-{variant}.gguf"
    testmodels.quantize_gguf(f16, model, variant)
    return model


@contextlib.contextmanager
def agent_with_model(model: Path, variant: str, extra: tuple[str, ...] = ()
                     ) -> Iterator[int]:
    """A real `fleet-agent serve` with ``model`` loaded; yields its gRPC port."""
    from agent.contract import sha256_file
    from agent.rpc import agent_pb2 as pb
    from controller.adapters.agent_client import GrpcAgentClient

    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        sha = sha256_file(model)
        data = d / "agent"
        (data / "store" / "incoming").mkdir(parents=True)
        (data / "store" / "incoming" / sha).write_bytes(model.read_bytes())
        port_file = d / "port"
        agent = subprocess.Popen(
            [sys.executable, "-m", "agent.cli", "serve", "--listen", "127.0.0.1:0",
             "--data-dir", str(data), "--port-file", str(port_file),
             "--threads", str(THREADS), *extra],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=ROOT)
        try:
            deadline = time.monotonic() + 60
            while not port_file.exists():
                if agent.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"agent did not start (exit {agent.poll()})")
                time.sleep(0.05)
            port = int(port_file.read_text())
            with GrpcAgentClient("bench", "127.0.0.1", port, 300) as client:
                client.load_model(pb.LoadModelRequest(
                    sha256=sha, name="tiny-llama", variant=variant, format="gguf",
                    n_ctx=512, size_bytes=model.stat().st_size))
            yield port
        finally:
            agent.terminate()
            agent.wait(timeout=30)


def open_direct(model: Path) -> Any:
    from llama_cpp import Llama

    return Llama(model_path=str(model), n_ctx=512, n_threads=THREADS,
                 n_threads_batch=THREADS, verbose=False)


def direct(llm: Any, tokens: int) -> Sample:
    """llama-cpp-python's own token loop, greedy, as the agent's runtime drives it."""
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
    return Sample((n - 1) / (total - first), first * 1000)


def client_sample(start: float, first: float, last: float, tokens: int) -> Sample:
    """Measured where an app sees it: the request, the first text and the last text to arrive.
    Tokens come from the server's count (several may travel in one message)."""
    return Sample((tokens - 1) / (last - first), (first - start) * 1000)


def run_pairs(llm: Any, through_agent: Callable[[int], Sample], tokens: int, reps: int
              ) -> RunResult:
    direct_runs, agent_runs = [], []
    for _ in range(reps):
        direct_runs.append(direct(llm, tokens))
        agent_runs.append(through_agent(tokens))
    return RunResult(
        Sample(statistics.median(s.decode_tps for s in direct_runs),
               statistics.median(s.ttft_ms for s in direct_runs)),
        Sample(statistics.median(s.decode_tps for s in agent_runs),
               statistics.median(s.ttft_ms for s in agent_runs)),
        max(s.decode_tps for s in agent_runs) / max(s.decode_tps for s in direct_runs))


def measure_runs(model: Path, through_agent: Callable[[int], Sample], tokens: int, reps: int,
                 runs: int) -> list[RunResult]:
    """``runs`` runs of ``reps`` direct/agent pairs on ``model``, after one warm-up pair."""
    llm = open_direct(model)
    try:
        run_pairs(llm, through_agent, 8, 1)  # warm both up
        return [run_pairs(llm, through_agent, tokens, reps) for _ in range(runs)]
    finally:
        llm.close()


def stream_interval(ms: float | None) -> str:
    return "agent default" if ms is None else f"{ms:g} ms"


def _spread(values: list[float], fmt: str) -> str:
    v = sorted(values)
    return (f"min {v[0]:{fmt}}, median {statistics.median(v):{fmt}}, max {v[-1]:{fmt}}")


def report(title: str, label: str, runs: list[RunResult]) -> None:
    load = os.getloadavg()[0]
    print(f"{title}; load average {load:.2f} at the end")
    for i, r in enumerate(runs, 1):
        print(f"  run {i}: direct {r.direct.decode_tps:7.1f} tok/s, TTFT {r.direct.ttft_ms:5.1f}"
              f" ms | {label} {r.agent.decode_tps:7.1f} tok/s, TTFT {r.agent.ttft_ms:5.1f} ms"
              f" | ratio {r.ratio:.3f} (best pairs {r.best_ratio:.3f})")
    print(f"  ratio of medians over {len(runs)} runs: "
          f"{_spread([r.ratio for r in runs], '.3f')} (target >= 0.97)")
    print(f"  ratio of best pairs over {len(runs)} runs: "
          f"{_spread([r.best_ratio for r in runs], '.3f')}")
    print("  TTFT overhead: "
          f"{_spread([r.agent.ttft_ms - r.direct.ttft_ms for r in runs], '+.1f')} ms")
