"""What each quantization type's CPU decode kernels cost on this host, against Q4_0.

Builds a 180M-parameter llama (4 layers of 2048 x 5632, random weights) with the test-model
builder, quantizes it with llama.cpp into Q4_0 (the baseline) and the other types, and times
single-threaded decode steps of each, interleaved over --rounds so a busy host slows all
alike. Prints ms per token, the file size and the ratio to Q4_0. docs/selection.md uses it
for what the speed model assumes about x86: one integer rate for every type (Q2_K is costed
higher on Arm CPUs with dot products only, from published runs).

The files (100-360 MB) may sit in a large last-level cache; a type whose time tracks its
bytes rather than its MACs is partly memory bound here, so read the ratios as upper bounds
on the kernel's own cost.

Usage: python bench/kernel_cost.py [--rounds 3] [--tokens 64] [--dir DIR]
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from controller.testmodels import (  # noqa: E402
    TinyLlamaSpec,
    native_stderr_to,
    quantize_gguf,
    write_tiny_llama_f16,
)

TYPES = ("q4_0", "q8_0", "q4_k_m", "q5_k_m", "q6_k", "q3_k_m", "q2_k", "f16")
SPEC = TinyLlamaSpec(n_embd=2048, n_ff=5632, n_layer=4, n_head=16, n_head_kv=4)


def build(where: Path) -> dict[str, Path]:
    f16 = where / "f16.gguf"
    if not f16.exists():
        write_tiny_llama_f16(f16, SPEC)
    files = {"f16": f16}
    for t in TYPES:
        if t != "f16":
            files[t] = where / f"{t}.gguf"
            if not files[t].exists():
                quantize_gguf(f16, files[t], t)
    return files


def ms_per_token(path: Path, tokens: int, log: Path) -> float:
    import llama_cpp

    with native_stderr_to(log):
        model = llama_cpp.Llama(str(path), n_ctx=256, n_threads=1, n_threads_batch=1,
                                verbose=False)
    prompt = model.tokenize(b"hello world", add_bos=True)
    model.eval(prompt)
    start = time.perf_counter()
    for _ in range(tokens):
        model.eval([prompt[-1]])
    elapsed = time.perf_counter() - start
    model.close()
    return 1000.0 * elapsed / tokens


def host_cpu() -> str:
    cpuinfo = Path("/proc/cpuinfo")
    lines = cpuinfo.read_text().splitlines() if cpuinfo.exists() else []
    model = next((line.split(":", 1)[1].strip() for line in lines
                  if line.startswith("model name")), "")
    return model or platform.processor() or platform.machine()


def llama_system_info() -> str:
    import llama_cpp

    info = llama_cpp.llama_print_system_info()
    text = info.decode() if isinstance(info, bytes) else str(info)
    return f"llama-cpp-python {llama_cpp.__version__}, {' '.join(text.split())}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--dir", type=Path, default=None,
                        help="keep the built files here (default: a temporary directory)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        where = args.dir or Path(tmp)
        where.mkdir(parents=True, exist_ok=True)
        files = build(where)
        times: dict[str, list[float]] = {t: [] for t in TYPES}
        for _ in range(args.rounds):
            for t in TYPES:
                times[t].append(ms_per_token(files[t], args.tokens, where / "llama.log"))
        base = statistics.median(times["q4_0"])
        print(f"kernel_cost: single-threaded decode, {SPEC.n_layer} x {SPEC.n_embd} x "
              f"{SPEC.n_ff}, median of {args.rounds} rounds of {args.tokens} tokens")
        print(f"  host: {host_cpu()}; llama.cpp: {llama_system_info()}")
        for t in TYPES:
            ms = statistics.median(times[t])
            size = files[t].stat().st_size / 1e6
            print(f"  {t:8} {ms:7.2f} ms/token  {size:6.1f} MB  ratio to q4_0 {ms / base:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
