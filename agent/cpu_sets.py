"""Which CPUs the model runtimes use, and which the agent itself keeps to.

A decoding llama.cpp thread is preempted whenever another thread is woken on its core: the
agent's gRPC or HTTP thread handing a streamed token on, the app reading it. Each wake-up costs
llama.cpp little CPU but the rate a token (bench/serving.py, docs/serving.md). When the runtime
uses fewer threads than the device has cores, the agent gives the runtime workers the fastest
cores (on big.LITTLE boards such as the RK3588, the big ones) and keeps its own threads on the
others, so its work never lands on a decoding core. When the runtime uses every core there is
nothing to split and nothing is pinned.

The plan is pure (``plan_cpus``); reading the machine and applying it are at the bottom.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from pathlib import Path

SYS_CPU = Path("/sys/devices/system/cpu")


@dataclass(frozen=True)
class CpuPlan:
    """``runtime``: the CPUs runtime workers may run on; ``agent``: the agent's own threads'.
    Both empty: nothing pinned (``reason`` says why)."""

    runtime: frozenset[int]
    agent: frozenset[int]
    reason: str

    @property
    def pinned(self) -> bool:
        return bool(self.runtime)


def describe(cpus: frozenset[int]) -> str:
    """``{0, 1, 2, 5}`` -> ``"0-2,5"`` (the kernel's own list format)."""
    out: list[str] = []
    run: list[int] = []
    for cpu in sorted(cpus):
        if run and cpu != run[-1] + 1:
            out.append(f"{run[0]}-{run[-1]}" if len(run) > 1 else str(run[0]))
            run = []
        run.append(cpu)
    if run:
        out.append(f"{run[0]}-{run[-1]}" if len(run) > 1 else str(run[0]))
    return ",".join(out)


def parse_cpu_list(text: str) -> frozenset[int]:
    """``"2-3,6"`` -> ``{2, 3, 6}``; ValueError on anything else."""
    cpus: set[int] = set()
    for part in text.split(","):
        first, dash, last = part.strip().partition("-")
        last = last if dash else first
        if not (first.isdigit() and last.isdigit() and int(first) <= int(last)):
            raise ValueError(f"{text!r} is not a CPU list")
        cpus.update(range(int(first), int(last) + 1))
    return frozenset(cpus)


def plan_cpus(available: frozenset[int], speed: dict[int, float], threads: int,
              wanted: str = "auto") -> CpuPlan:
    """Split ``available`` CPUs between a runtime of ``threads`` threads and the agent.

    ``wanted``: ``"auto"`` (the ``threads`` fastest CPUs by ``speed``, ties to the higher
    number, as the big cores come last on big.LITTLE boards; the agent gets the rest),
    ``"off"``, or a CPU list for the runtime (``"2-3"``; the agent gets the rest)."""
    if wanted == "off":
        return CpuPlan(frozenset(), frozenset(), "off (--runtime-cpus off)")
    if wanted != "auto":
        runtime = parse_cpu_list(wanted)
        if not runtime <= available:
            raise ValueError(f"CPUs {describe(runtime - available)} are not available to "
                             f"the agent (it may use {describe(available)})")
        rest = available - runtime
        return CpuPlan(runtime, rest, f"runtime on CPUs {describe(runtime)} as asked, "
                       + (f"agent on {describe(rest)}" if rest else "agent unpinned"))
    if threads >= len(available):
        return CpuPlan(frozenset(), frozenset(),
                       f"not pinned: the runtime's {threads} threads use all "
                       f"{len(available)} CPUs")
    ranked = sorted(available, key=lambda cpu: (speed.get(cpu, 0.0), cpu), reverse=True)
    runtime = frozenset(ranked[:threads])
    rest = available - runtime
    return CpuPlan(runtime, rest, f"runtime on CPUs {describe(runtime)} (the fastest "
                   f"{threads}), agent on {describe(rest)}")


# -- the machine -------------------------------------------------------------------------

def available_cpus() -> frozenset[int]:
    """The CPUs this process may run on (its affinity mask, e.g. a container's cpuset)."""
    if hasattr(os, "sched_getaffinity"):
        return frozenset(os.sched_getaffinity(0))
    return frozenset(range(os.cpu_count() or 1))


def cpu_speeds(cpus: frozenset[int], root: Path = SYS_CPU) -> dict[int, float]:
    """Each CPU's relative speed: the kernel's ``cpu_capacity`` (ARM big.LITTLE), else its
    highest clock (cpufreq), else equal."""
    speeds: dict[int, float] = {}
    for cpu in cpus:
        for name in ("cpu_capacity", "cpufreq/cpuinfo_max_freq"):
            with contextlib.suppress(OSError, ValueError):
                speeds[cpu] = float((root / f"cpu{cpu}" / name).read_text().strip())
                break
    return speeds


def pin_process(cpus: frozenset[int]) -> None:
    """Every thread of this process, and the threads and processes it starts later, on
    ``cpus`` (Linux; nothing elsewhere)."""
    if not cpus or not hasattr(os, "sched_setaffinity"):
        return
    tasks = Path("/proc/self/task")
    tids = [int(t) for t in os.listdir(tasks)] if tasks.is_dir() else [0]
    for tid in tids:
        with contextlib.suppress(OSError):  # a thread that just ended
            os.sched_setaffinity(tid, cpus)
