"""A rollout to 16 lab devices of mixed profiles in waves: wall time per wave and the
controller's own CPU time per device, next to what the devices' agents spent.

Two rollouts in one run: a real one (push, verify, load on trial, health check, commit) in
waves ``1,25%,50%,100%``, then the same deploy again, where every device is already done
(the baseline of pure controller bookkeeping: plan, record, ask each device). The target:
the controller is never the bottleneck, i.e. its CPU time is a small share of the wall time
and of the agents' CPU time. Usage: python bench/rollout.py [--devices 16] [--concurrency 4]
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _cpu_self() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _cpu_of(pids: list[int]) -> float:
    """User + system seconds of running processes and their children (agents, workers)."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += sum(int(v) for v in fields[11:15]) / ticks  # utime stime cutime cstime
    return total


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--devices", type=int, default=16)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--waves", default="1,25%,50%,100%")
    args = parser.parse_args()
    home = Path(tempfile.mkdtemp(prefix="bench-rollout-"))
    os.environ["FLEET_HOME"] = str(home)

    from controller.core.select import Request
    from controller.services import deploying, history, lab_fleet, models
    from controller.services.context import Fleet

    fleet = Fleet.open()
    spec = models.ensure_model(fleet, "tiny-llama")
    started = lab_fleet.lab_up(fleet, args.devices, [], secure=True, agents=True)
    try:
        devices = fleet.inventory.list_devices()
        agents = [d.agent_pid for d in started]
        options = deploying.DeployOptions(concurrency=args.concurrency, waves=args.waves)
        request = Request(ctx=spec.default_ctx)
        rows = []
        for label in ("rollout", "again (all done)"):
            agents_before, cpu_before = _cpu_of(agents), _cpu_self()
            t0 = time.perf_counter()
            report = deploying.deploy(fleet, spec, devices, request, options)
            wall = time.perf_counter() - t0
            cpu = _cpu_self() - cpu_before
            rows.append((label, report, wall, cpu, _cpu_of(agents) - agents_before))
        first = rows[0][1]
        detail = history.show(fleet, first.rollout, events=True)
        waves: dict[int, list[float]] = {}
        wave_of = {d.device: d.wave for d in detail.devices}
        for e in detail.events:
            if e.step == "planned":  # recorded for every device when the rollout starts
                continue
            waves.setdefault(wave_of[e.device], []).append(e.at.timestamp())
        print(f"{args.devices} lab devices ({', '.join(sorted({d.profile for d in started}))}),"
              f" waves {args.waves} -> sizes {detail.waves}, concurrency {args.concurrency}")
        print(f"{'wave':>4}  {'devices':>7}  {'wall s':>7}")
        for wave, stamps in sorted(waves.items()):
            print(f"{wave + 1:>4}  {detail.waves[wave]:>7}  {max(stamps) - min(stamps):>7.2f}")
        print(f"{'run':<18} {'status':<10} {'wall s':>7} {'ctl CPU s':>9} "
              f"{'ctl CPU/device':>14} {'ctl share of wall':>17} {'agents CPU s':>12}")
        for label, report, wall, cpu, agent_cpu in rows:
            print(f"{label:<18} {report.status:<10} {wall:>7.2f} {cpu:>9.2f} "
                  f"{cpu / args.devices * 1000:>11.0f} ms {cpu / wall:>16.1%} "
                  f"{agent_cpu:>12.2f}")
        real, done = rows[0], rows[1]
        print(f"controller CPU per device: {real[3] / args.devices * 1000:.0f} ms in a real "
              f"rollout vs {done[3] / args.devices * 1000:.0f} ms of bookkeeping alone "
              f"(ratio {real[3] / max(done[3], 1e-9):.1f}); the controller used "
              f"{real[3] / real[2]:.0%} of one core while the rollout ran")
    finally:
        lab_fleet.lab_down(fleet)


if __name__ == "__main__":
    main()
