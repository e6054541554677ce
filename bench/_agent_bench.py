"""Shared by the token-path benchmarks: the tiny model, a real agent process with it loaded,
the llama-cpp-python baseline, and the spread over runs.

A "pair" is one direct request and one through the agent, back to back, so both see the same
machine state; a "run" is ``reps`` pairs, its result the median of each side and their ratio.
Several runs in one invocation show the spread (min/median/max) of the runs' ratios and of
every pair's ratio, since one run on a shared machine says little.

On Linux each pair also counts the CPU each process spent (``/proc/*/schedstat``): the direct
loop's thread, and on the agent side the runtime worker, the agent process and the client.
Unlike the rates, CPU per request barely moves with the machine's load, so it shows what the
agent path costs even when other work makes the ratios noisy.
"""

from __future__ import annotations

import argparse
import codecs
import contextlib
import functools
import itertools
import math
import multiprocessing as mp
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

PROMPT = "The edge device reports"
THREADS = 1
N_CTX = 1024  # the context both sides load the model with (--n-ctx): room for a fresh prompt
# of 32 words (204-255 tokens) and 256 new tokens, and for longer prompts or answers
FRESH_WORDS = 32  # --fresh-prompt-words: an app's new question, a real prefill
SERVED = "bench-model"  # the name the agent serves the bench's model by
# words for prompts no side has seen before (--fresh-prompt-words): a real prefill each time
_WORDS = ("kiosk", "robot", "phone", "model", "device", "fleet", "token", "store", "update",
          "battery", "camera", "sensor", "question", "answer", "network", "memory")


def fresh_prompt(i: int, words: int) -> str:
    """The ``i``-th request's prompt: ``PROMPT`` when ``words`` is 0 (the same every time, so
    llama.cpp reuses the previous request's KV cache on both sides and TTFT is one token's
    work), else ``words`` words no earlier request began with."""
    if words <= 0:
        return PROMPT
    return f"Request {i}: " + " ".join(_WORDS[(i * 7 + k * k) % len(_WORDS)]
                                       for k in range(words))


@dataclass(frozen=True)
class Sample:
    decode_tps: float
    ttft_ms: float
    # the client's TTFT less the worker's own (its clock starts after tokenizing and stops at
    # the first token): what the path outside the runtime costs the first text, without the
    # prefill's noise; it also holds the tokenizing (~0.04 ms for the benches' prompts) and,
    # when a first token makes no text yet, a decode step (nan: not known, e.g. the direct
    # baseline)
    outside_ms: float = math.nan


@dataclass(frozen=True)
class Cpu:
    """CPU milliseconds one request cost each process (0 where unknown)."""

    worker: float = 0.0  # the runtime worker (direct: the thread running llama.cpp)
    agent: float = 0.0
    client: float = 0.0

    @property
    def total(self) -> float:
        return self.worker + self.agent + self.client


@dataclass(frozen=True)
class RunResult:
    direct: Sample  # medians of the run
    agent: Sample
    pair_ratios: list[float]  # each pair's agent decode rate over the direct one's
    direct_cpu: Cpu  # medians of the run
    agent_cpu: Cpu
    outside_ms: list[float] = field(default_factory=list)  # each agent request's

    @property
    def ratio(self) -> float:
        return self.agent.decode_tps / self.direct.decode_tps


@dataclass(frozen=True)
class RunningAgent:
    port: int  # gRPC
    pid: int
    cpus: str  # how the agent split the CPUs (its log's "CPUs:" line, agent.cpu_sets)


def build_model(d: Path, variant: str) -> Path:
    from controller import testmodels

    f16 = d / "tiny-f16.gguf"
    testmodels.write_tiny_llama_f16(f16)
    model = d / f"tiny-{variant}.gguf"
    testmodels.quantize_gguf(f16, model, variant)
    return model


@contextlib.contextmanager
def agent_with_model(model: Path, variant: str, extra: tuple[str, ...] = (),
                     n_ctx: int = N_CTX) -> Iterator[RunningAgent]:
    """A real `fleet-agent serve` with ``model`` loaded (a context of ``n_ctx`` tokens)."""
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
        log = d / "agent.log"
        with log.open("wb") as out:
            agent = subprocess.Popen(
                [sys.executable, "-m", "agent.cli", "serve", "--listen", "127.0.0.1:0",
                 "--data-dir", str(data), "--port-file", str(port_file),
                 "--threads", str(THREADS), *extra],
                stdout=out, stderr=subprocess.STDOUT, cwd=ROOT)
        try:
            deadline = time.monotonic() + 60
            while not port_file.exists():
                if agent.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"agent did not start (exit {agent.poll()})")
                time.sleep(0.05)
            port = int(port_file.read_text())
            with GrpcAgentClient("bench", "127.0.0.1", port, 300) as client:
                client.load_model(pb.LoadModelRequest(
                    sha256=sha, name=SERVED, variant=variant, format="gguf",
                    n_ctx=n_ctx, size_bytes=model.stat().st_size))
            cpus = next((line.split("CPUs: ", 1)[1] for line in log.read_text().splitlines()
                         if "CPUs: " in line), "?")
            yield RunningAgent(port, agent.pid, cpus)
        finally:
            agent.terminate()
            agent.wait(timeout=30)


def open_direct(model: Path, n_ctx: int = N_CTX) -> Any:
    from llama_cpp import Llama

    return Llama(model_path=str(model), n_ctx=n_ctx, n_threads=THREADS,
                 n_threads_batch=THREADS, verbose=False)


def direct(llm: Any, tokens: int, prompt: str = PROMPT) -> Sample:
    """llama-cpp-python's own token loop, greedy, as the agent's runtime drives it (with the
    same sampling settings); the prompt's tokenization counts in TTFT, as in the agent. Each
    token is made text (its bytes, UTF-8 decoded across token boundaries) as an app reading
    llama-cpp-python must, and as the agent's runtime does: the same work on both sides.
    Timed as the agent's side is (``client_sample``): TTFT to the first text, the rate from
    the first text to the last (a token whose bytes end inside a character makes no text
    yet: with a fresh prompt the first text may come a few tokens after the first token)."""
    start = time.perf_counter()
    ids = llm.tokenize(prompt.encode(), add_bos=True)
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    first = last = 0.0
    n = 0
    for token in llm.generate(ids, temp=0.0, top_k=40, top_p=0.95, reset=True):
        text = decoder.decode(llm.detokenize([token]))
        n += 1
        if text:
            last = time.perf_counter()
            first = first or last
        if n >= tokens:
            break
    return client_sample(start, first, last, n)


def client_sample(start: float, first: float, last: float, tokens: int,
                  worker_ttft_ms: float = math.nan) -> Sample:
    """Measured where an app sees it: the request, the first text and the last text to arrive.
    Tokens come from the server's count (several may travel in one message);
    ``worker_ttft_ms`` is the runtime's own TTFT as the agent reports it (``timings.ttft_ms``,
    ``GenerateSummary.ttft_ms``)."""
    ttft = (first - start) * 1000
    return Sample((tokens - 1) / (last - first), ttft, ttft - worker_ttft_ms)


def _schedstat_ns(pid: int | str) -> int:
    """CPU nanoseconds of every thread of ``pid`` (Linux; 0 elsewhere or once it is gone)."""
    total = 0
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            with contextlib.suppress(OSError), open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                total += int(f.read().split()[0])
    except OSError:
        return 0
    return total


def _children(pid: int) -> list[int]:
    kids: list[int] = []
    with contextlib.suppress(OSError):
        for tid in os.listdir(f"/proc/{pid}/task"):
            with contextlib.suppress(OSError), open(f"/proc/{pid}/task/{tid}/children") as f:
                kids += [int(k) for k in f.read().split()]
    return kids


def worker_pid(agent_pid: int) -> int:
    """The agent's runtime worker: the child that has spent the most CPU (multiprocessing's
    resource tracker is a child too)."""
    return max(_children(agent_pid), key=_schedstat_ns, default=0)


def worker_cpus(agent_pid: int) -> frozenset[int]:
    """The CPUs the agent's runtime worker may run on (empty where unknown)."""
    from agent.cpu_sets import parse_cpu_list

    with contextlib.suppress(OSError, StopIteration):
        status = Path(f"/proc/{worker_pid(agent_pid)}/status").read_text().splitlines()
        line = next(x for x in status if x.startswith("Cpus_allowed_list:"))
        return parse_cpu_list(line.split(":", 1)[1])
    return frozenset()


class CpuMeter:
    """CPU per request of the agent path's three processes: the agent's runtime worker(s)
    (its children), the agent itself and this process (the client)."""

    def __init__(self, agent_pid: int) -> None:
        self.agent_pid = agent_pid

    def _now(self) -> tuple[int, int, int]:
        workers = sum(_schedstat_ns(k) for k in _children(self.agent_pid))
        return workers, _schedstat_ns(self.agent_pid), _schedstat_ns(os.getpid())

    def measure(self, call: Callable[[], Sample]) -> tuple[Sample, Cpu]:
        before = self._now()
        sample = call()
        after = self._now()
        w, a, c = ((y - x) / 1e6 for x, y in zip(before, after, strict=True))
        return sample, Cpu(w, a, c)


def _direct_main(conn: Any, model: str, cpus: frozenset[int], n_ctx: int) -> None:
    if cpus:
        os.sched_setaffinity(0, cpus)
    llm = open_direct(Path(model), n_ctx)
    conn.send("ready")
    while (ask := conn.recv())[0]:
        before = time.thread_time()  # llama.cpp runs one thread here: this one
        sample = direct(llm, *ask)
        conn.send((sample, (time.thread_time() - before) * 1000))
    llm.close()


class DirectProcess:
    """llama-cpp-python called directly in a process of its own, as an app would: not in the
    bench's process, whose gRPC and HTTP clients' threads would share its GIL and CPU."""

    def __init__(self, model: Path, cpus: frozenset[int] = frozenset(),
                 n_ctx: int = N_CTX) -> None:
        ctx = mp.get_context("spawn")
        self._conn, child = ctx.Pipe()
        self._proc = ctx.Process(target=_direct_main, args=(child, str(model), cpus, n_ctx),
                                 daemon=True)
        self._proc.start()
        child.close()
        if self._conn.recv() != "ready":
            raise RuntimeError("the direct llama-cpp-python process did not start")

    @property
    def pid(self) -> int:
        return self._proc.pid or 0

    def __call__(self, tokens: int, prompt: str = PROMPT) -> tuple[Sample, Cpu]:
        self._conn.send((tokens, prompt))
        sample, cpu_ms = self._conn.recv()
        return sample, Cpu(worker=cpu_ms)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._conn.send((0, ""))
        self._proc.join(timeout=30)
        if self._proc.is_alive():
            self._proc.kill()
            self._proc.join()


def _median_cpu(cpus: list[Cpu]) -> Cpu:
    return Cpu(statistics.median(c.worker for c in cpus),
               statistics.median(c.agent for c in cpus),
               statistics.median(c.client for c in cpus))


Reader = Callable[[int, str], Sample]  # (tokens, prompt) -> what the app saw


def run_pairs(baseline: DirectProcess, through_agent: Reader, meter: CpuMeter, tokens: int,
              reps: int, prompts: Iterator[str], agent_first: bool = False,
              warm: bool = True) -> RunResult:
    """``reps`` pairs, both sides of a pair on the same prompt, the side that goes first
    alternating from pair to pair (from the agent's with ``agent_first``): on this kind of
    host the second of two back-to-back requests can be several % faster than the first
    (``direct_spread.py --pairs``), which a fixed order would credit to one side.
    ``warm``: each side makes a request of its own (another new prompt, not measured) just
    before its measured one, so both are measured as an app asking again and again finds
    them, neither right after the other: on a device no second llama.cpp process runs
    between an app's requests. Right after the other side's request a side finds its caches
    cold: traced on this host, the agent's path outside the runtime took 10 ms instead of 5
    and its prefill 13 ms longer, the direct side's prefill 8 ms longer, a penalty that falls
    on whichever side goes second and more on the agent's. (Requests minutes apart find
    everything colder, whatever serves them: here a direct request after 3 s idle took 30 %
    longer to its first token.)"""
    direct_runs, agent_runs = [], []
    for i in range(reps):
        prompt = next(prompts)
        agent_side = functools.partial(
            _after_own, lambda p: meter.measure(functools.partial(through_agent, tokens, p)),
            prompt, prompts, warm)
        direct_side = functools.partial(
            _after_own, lambda p: baseline(tokens, p), prompt, prompts, warm)
        if (i % 2 == 1) != agent_first:
            agent_runs.append(agent_side())
            direct_runs.append(direct_side())
        else:
            direct_runs.append(direct_side())
            agent_runs.append(agent_side())
    return RunResult(
        Sample(statistics.median(s.decode_tps for s, _ in direct_runs),
               statistics.median(s.ttft_ms for s, _ in direct_runs)),
        Sample(statistics.median(s.decode_tps for s, _ in agent_runs),
               statistics.median(s.ttft_ms for s, _ in agent_runs)),
        [a.decode_tps / d.decode_tps
         for (a, _), (d, _) in zip(agent_runs, direct_runs, strict=True)],
        _median_cpu([c for _, c in direct_runs]), _median_cpu([c for _, c in agent_runs]),
        [s.outside_ms for s, _ in agent_runs if not math.isnan(s.outside_ms)])


def _after_own(side: Callable[[str], tuple[Sample, Cpu]], prompt: str, prompts: Iterator[str],
               warm: bool) -> tuple[Sample, Cpu]:
    """``side`` on ``prompt``, after a request of its own on the next new prompt if ``warm``."""
    if warm:
        side(next(prompts))
    return side(prompt)


def measure_runs(model: Path, agent: RunningAgent, through_agent: Reader, tokens: int,
                 reps: int, runs: int, fresh_words: int = FRESH_WORDS,
                 n_ctx: int = N_CTX, warm: bool = True) -> list[RunResult]:
    """``runs`` runs of ``reps`` direct/agent pairs on ``model``, after one warm-up pair.
    The baseline runs on the CPUs the agent's runtime worker may use (the same core when the
    agent pins its runtime: no core is luckier than the other)."""
    baseline = DirectProcess(model, worker_cpus(agent.pid), n_ctx)
    meter = CpuMeter(agent.pid)
    prompts = (fresh_prompt(i, fresh_words) for i in itertools.count())
    try:
        run_pairs(baseline, through_agent, meter, 8, 1, prompts)  # warm both up
        return [run_pairs(baseline, through_agent, meter, tokens, reps, prompts,
                          agent_first=run % 2 == 1, warm=warm) for run in range(runs)]
    finally:
        baseline.close()


def add_agent_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--stream-interval-ms", type=float, default=None,
                        help="the agent's --stream-interval-ms (default: the agent's)")
    parser.add_argument("--fresh-prompt-words", type=int, default=FRESH_WORDS,
                        help="a new prompt of this many words for every pair, as an app's new "
                        "question: a real prefill each time (default %(default)d; 0: the same "
                        "short prompt, whose KV cache both sides reuse, so TTFT is one "
                        "token's work)")
    parser.add_argument("--n-ctx", type=int, default=N_CTX,
                        help="the context both sides load the model with (room for a longer "
                        "--fresh-prompt-words; default %(default)d)")
    add_cold_pairs_option(parser)
    parser.add_argument("--runtime-cpus", default=None,
                        help="the agent's --runtime-cpus: auto, off or a CPU list (default: "
                        "the agent's, auto)")


def add_cold_pairs_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--cold-pairs", action="store_true",
                        help="no warm-up request of its own before each side's measured one "
                        "(each side then often follows the other's request, which costs the "
                        "side that follows; see run_pairs)")


def agent_options(args: argparse.Namespace) -> tuple[str, ...]:
    extra: tuple[str, ...] = ()
    if args.stream_interval_ms is not None:
        extra += ("--stream-interval-ms", str(args.stream_interval_ms))
    if args.runtime_cpus is not None:
        extra += ("--runtime-cpus", args.runtime_cpus)
    return extra


def agent_setup(args: argparse.Namespace, agent: RunningAgent) -> str:
    """The agent's settings that shape the token path, for a bench's title."""
    interval = "agent default" if args.stream_interval_ms is None else (
        f"{args.stream_interval_ms:g} ms")
    from agent.cpu_sets import describe

    baseline = describe(worker_cpus(agent.pid)) or "?"
    prompt = (f"a new prompt of {args.fresh_prompt_words} words each pair"
              if args.fresh_prompt_words else f"the prompt {PROMPT!r} each time (KV cache reused)")
    prompt += ("; cold pairs" if args.cold_pairs else
               "; each side's own request just before its measured one")
    return (f"tiny-llama {args.variant}; stream interval {interval}; CPUs: {agent.cpus}; the "
            f"direct baseline on CPUs {baseline}, as the worker; {prompt}; a context of "
            f"{args.n_ctx} tokens")


def spread(values: list[float], fmt: str) -> str:
    v = sorted(values)
    return (f"min {v[0]:{fmt}}, median {statistics.median(v):{fmt}}, max {v[-1]:{fmt}}")


def runs_holding(ratios: list[float], target: float = 0.97) -> str:
    return f"{sum(r >= target for r in ratios)} of {len(ratios)} runs >= {target}"


def load_now() -> str:
    """The load average over 1, 5 and 15 minutes."""
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def report(title: str, label: str, runs: list[RunResult], load_at_start: str) -> None:
    print(f"{title}\n  load average (1/5/15 min) {load_at_start} at the start, {load_now()} at the"
          f" end, on {os.cpu_count()} CPUs")
    for i, r in enumerate(runs, 1):
        print(f"  run {i}: direct {r.direct.decode_tps:7.1f} tok/s, TTFT {r.direct.ttft_ms:5.1f}"
              f" ms | {label} {r.agent.decode_tps:7.1f} tok/s, TTFT {r.agent.ttft_ms:5.1f} ms"
              f" | ratio {r.ratio:.3f} (pairs {spread(r.pair_ratios, '.3f')})")
    pairs = [x for r in runs for x in r.pair_ratios]
    decode = [r.ratio for r in runs]
    ttft = [r.direct.ttft_ms / r.agent.ttft_ms for r in runs]
    print(f"  decode ratio, median of each run, over {len(runs)} runs: "
          f"{spread(decode, '.3f')}; {runs_holding(decode)}")
    print(f"  decode ratio of each of the {len(pairs)} pairs: {spread(pairs, '.3f')}")
    print(f"  TTFT ratio (direct/agent), medians of each run: {spread(ttft, '.3f')}; "
          f"{runs_holding(ttft)}")
    print("  TTFT overhead, medians of each run: "
          f"{spread([r.agent.ttft_ms - r.direct.ttft_ms for r in runs], '+.1f')} ms")
    outside = [x for r in runs for x in r.outside_ms]
    if outside:
        print(f"  the path outside the runtime, each request (the client's TTFT less the "
              f"worker's own): {spread(outside, '.1f')} ms")
        noiseless = [r.direct.ttft_ms / (r.direct.ttft_ms + statistics.median(r.outside_ms))
                     for r in runs if r.outside_ms]
        print(f"  TTFT ratio without the two prefills' noise (each run's direct TTFT over "
              f"itself plus that path's median): {spread(noiseless, '.3f')}; "
              f"{runs_holding(noiseless)}")
    if runs[0].agent_cpu.total > 0:
        d = statistics.median(r.direct_cpu.worker for r in runs)
        w, a, c = (statistics.median(getattr(r.agent_cpu, k) for r in runs)
                   for k in ("worker", "agent", "client"))
        print(f"  CPU ms per request (medians): direct {d:.1f} | worker {w:.1f} + agent {a:.1f}"
              f" + client {c:.1f} = {w + a + c:.1f} ({(w + a + c) / d - 1:+.1%} over direct)")
