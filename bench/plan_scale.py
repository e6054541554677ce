"""Plan one model with 20 variants for 10,000 devices; print devices per second.

Baseline (same run): ``choose`` per device, recomputing every variant's device-independent
costs (memory need, work per token) and the speeds for every device. Candidate:
``choose_many``, which computes those once per variant and once per kind of device, and
decides once per kind and number of fitting variants; both explain every variant of every
device (``choose_many`` when the explanation is read). Wall and CPU time are printed: on a
busy machine wall time is mostly waiting for a core.
Usage: python bench/plan_scale.py [--devices 10000] [--variants 20]
"""

from __future__ import annotations

import argparse
import gc
import random
import time
from dataclasses import replace

from controller.adapters.data_files import load_model, load_profiles
from controller.core.models import Variant
from controller.core.select import Choice, Request, choose, choose_many


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--devices", type=int, default=10_000)
    parser.add_argument("--variants", type=int, default=20)
    args = parser.parse_args()
    rng = random.Random(7)
    base = load_model("llama-3.2-3b")
    template = base.variants[-1]
    variants = tuple(
        Variant(name=f"v{i}", format="gguf", quant="Q4_K_M",
                size_bytes=int(template.size_bytes * (0.4 + 0.1 * i)),
                bits_per_weight=2 + 0.7 * i, quality_kld=1.0 / (1 + i),
                quality_source="bench", source=template.source)
        for i in range(args.variants)
    )
    model = replace(base, variants=variants)
    real = [p for p in load_profiles().values() if p.kind == "device"]
    devices = [
        (f"dev-{i}", replace(rng.choice(real), ram_bytes=int(rng.choice(real).ram_bytes
                                                           * rng.uniform(0.5, 1.5))))
        for i in range(args.devices)
    ]
    request = Request(ctx=4096, prefer="quality")

    started, cpu = time.perf_counter(), time.process_time()
    baseline = [choose(model, profile, request, name) for name, profile in devices]
    base_s, base_cpu = time.perf_counter() - started, time.process_time() - cpu
    # keep only the picks: 200,000 live candidates would make the collector's full passes
    # during the next run scan them, timing the baseline's leftovers instead of the planner
    picked = [c.chosen and c.chosen.variant.name for c in baseline]
    said = [_explained(c) for c in baseline[::50]]
    del baseline
    gc.collect()
    started, cpu = time.perf_counter(), time.process_time()
    fast = choose_many(model, devices, request)
    fast_s, fast_cpu = time.perf_counter() - started, time.process_time() - cpu
    same = picked == [c.chosen and c.chosen.variant.name for c in fast]
    started = time.perf_counter()
    fast_said = [_explained(c) for c in fast]
    read_s = time.perf_counter() - started
    same_said = said == fast_said[::50]
    print(f"plan_scale: {args.devices} devices x {args.variants} variants")
    print(f"  baseline choose per device : {args.devices / base_s:10,.0f} devices/s "
          f"({base_s:.2f} s wall, {base_cpu:.2f} s CPU)")
    print(f"  choose_many (shared costs) : {args.devices / fast_s:10,.0f} devices/s "
          f"({fast_s:.2f} s wall, {fast_cpu:.2f} s CPU)")
    print(f"  ratio {base_s / fast_s:.2f}x; same choices: {same}")
    print(f"  reading every explanation afterwards: {read_s:.2f} s wall; "
          f"same explanations (every 50th device): {same_said}")


def _explained(choice: Choice) -> tuple[str, ...]:
    return (choice.reason, *(f"{c.variant.name}: {c.reason}" for c in choice.candidates))


if __name__ == "__main__":
    main()
