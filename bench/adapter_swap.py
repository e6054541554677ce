"""LoRA adapter swap on a loaded base vs a full model reload, in the same run.

The agent's worker holds the base model; switching adapters is ``llama_set_adapters_lora`` on
its context (plus dropping the cached prompt), while switching models is a new worker
process loading the file. Both are measured here through the real worker pipe, as the agent
does them, on the tiny llama (q4_k_m) and its tiny LoRA adapter (rank 8 on attn_q, attn_v,
ffn_up, ffn_down of every layer):

    swap          use_adapter A -> B through the worker pipe (median of --swaps)
    swap + token  a swap, then a 1-token generation (the prompt is evaluated again)
    adapter load  load_adapter of a new adapter file on the loaded base (once per adapter)
    reload        a new worker process on the same base file, until ready (median of --reloads)
    reload+lora   the same with the adapter given at load time (llama.cpp's lora_path, which
                  also turns mmap off) measured in-process, for reference

Prints the medians and the ratio reload / swap (how many swaps one reload costs).

Usage: python bench/adapter_swap.py [--reloads 5] [--swaps 50]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

from _agent_bench import THREADS, build_model

N_CTX = 512


def _median_ms(samples: list[float]) -> float:
    return statistics.median(samples) * 1000


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reloads", type=int, default=5)
    parser.add_argument("--swaps", type=int, default=50)
    args, _ = parser.parse_known_args()
    reloads, swaps = max(1, min(args.reloads, 50)), max(2, min(args.swaps, 10_000))

    from agent.runtimes.base import GenerationRequest
    from agent.workers import Worker
    from controller.testmodels import TinyLoraSpec, write_tiny_lora

    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        model = build_model(d, "q4_k_m")
        a, b = d / "a.gguf", d / "b.gguf"
        write_tiny_lora(a)
        write_tiny_lora(b, spec=TinyLoraSpec(seed=99))

        reload_s = []
        for _ in range(reloads):
            started = time.perf_counter()
            w = Worker("gguf", model, N_CTX, THREADS)
            reload_s.append(time.perf_counter() - started)
            w.stop()

        w = Worker("gguf", model, N_CTX, THREADS)
        try:
            started = time.perf_counter()
            w.call("load_adapter", "a", str(a))
            load_a = time.perf_counter() - started
            w.call("load_adapter", "b", str(b))
            swap_s, swap_token_s = [], []
            for i in range(swaps):
                key = "ab"[i % 2]
                started = time.perf_counter()
                w.call("use_adapter", key)
                swap_s.append(time.perf_counter() - started)
            token = GenerationRequest(prompt="Hello", max_tokens=1)
            for i in range(min(swaps, 20)):
                started = time.perf_counter()
                request = GenerationRequest(prompt=token.prompt, max_tokens=1,
                                            adapter="ab"[i % 2])
                for _ in w.generate(request):
                    pass
                swap_token_s.append(time.perf_counter() - started)
        finally:
            w.stop()

        from llama_cpp import Llama

        from controller.testmodels import native_stderr_to

        lora_load_s = []
        for _ in range(reloads):
            started = time.perf_counter()
            with native_stderr_to(d / "llama.log"):  # llama.cpp logs each adapter tensor
                llm = Llama(model_path=str(model), lora_path=str(a), n_ctx=N_CTX,
                            n_threads=THREADS, n_gpu_layers=0, verbose=False)
            lora_load_s.append(time.perf_counter() - started)
            llm.close()
        sizes = model.stat().st_size / 2**20, a.stat().st_size / 2**20

    swap, reload = _median_ms(swap_s), _median_ms(reload_s)
    print(f"model {model.name} ({sizes[0]:.1f} MiB), adapter {sizes[1]:.2f} MiB, "
          f"threads {THREADS}")
    print(f"swap (use_adapter through the worker pipe)  median {swap:9.3f} ms "
          f"(min {min(swap_s) * 1000:.3f}, max {max(swap_s) * 1000:.3f}, n={len(swap_s)})")
    print(f"swap + 1-token generation                   median "
          f"{_median_ms(swap_token_s):9.3f} ms (n={len(swap_token_s)})")
    print(f"adapter load on the loaded base (once)             {load_a * 1000:9.3f} ms")
    print(f"full reload (new worker process, until ready) median {reload:9.3f} ms "
          f"(min {min(reload_s) * 1000:.1f}, max {max(reload_s) * 1000:.1f}, n={reloads})")
    print(f"in-process load with lora_path (mmap off)     median "
          f"{_median_ms(lora_load_s):9.3f} ms (n={reloads})")
    print(f"ratio reload / swap: {reload / swap:.0f}x; reload / (swap + 1 token): "
          f"{reload / _median_ms(swap_token_s):.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
