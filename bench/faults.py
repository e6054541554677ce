"""A 4-device rollout of tiny-llama over real links (lab devices in network namespaces, root),
clean and under faults, in one run:

1. clean: the baseline;
2. 20 % packet loss on every device's link (iptables ``statistic`` in each namespace);
3. one 30 s cut of every device's link while the uploads run (``ip link set down``), with
   ``FLEET_SSH_STALL_TIMEOUT`` (default here 10 s) shorter than the cut.

Each run starts from empty stores (``lab up --fresh``), deploys with ``--canary 0`` (all four
at once) and ``--bwlimit 8`` MB/s per device (a field link, and time for the cut to land
mid-upload), and reports wall time against the clean run, the bytes the devices acknowledged and
how many of them were sent twice (re-sent = acknowledged - file sizes). Every device must end
``deployed``. Holds /tmp/edgefleet-netns.lock while it runs.

Usage: python bench/faults.py [--cut-s 30] [--loss 0.2] [--stall-s 10] [--rounds 1]
"""

from __future__ import annotations

import argparse
import fcntl
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
MIB = 1024 * 1024


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--cut-s", type=float, default=30.0)
    parser.add_argument("--loss", type=float, default=0.2)
    parser.add_argument("--stall-s", type=float, default=10.0)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--bwlimit", type=float, default=8.0, help="MB/s per device")
    args, _ = parser.parse_known_args()
    if os.geteuid() != 0:
        print("bench/faults.py needs root (network namespaces, iptables); skipped")
        return 0
    with tempfile.TemporaryDirectory() as tmp, open("/tmp/edgefleet-netns.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        os.environ["FLEET_HOME"] = str(Path(tmp) / "home")
        os.environ["FLEET_SSH_STALL_TIMEOUT"] = str(args.stall_s)
        os.environ.setdefault("FLEET_AGENT_SCRUB_MBPS", "0")
        return run(args)


def run(args: argparse.Namespace) -> int:
    from controller import lab_netns, settings
    from controller.core.select import Request
    from controller.lab import read_registry
    from controller.services import deploying
    from controller.services.context import Fleet
    from controller.services.lab_fleet import lab_down, lab_up
    from controller.services.models import ensure_model

    fleet = Fleet.open()
    model = ensure_model(fleet, "tiny-llama")
    results: dict[str, list[tuple[float, int, int, str]]] = {}
    try:
        for _ in range(args.rounds):
            for scenario in ("clean", "loss", "cut"):
                lab_up(fleet, 4, [], netns=True, fresh=True)
                registry = read_registry(settings.lab_dir())
                devices = [fleet.inventory.get_device(d.name) for d in registry]
                cutter = None
                done = threading.Event()
                if scenario == "loss":
                    for d in registry:
                        subprocess.run(["ip", "netns", "exec", d.netns, "iptables", "-A",
                                        "INPUT", "-m", "statistic", "--mode", "random",
                                        "--probability", str(args.loss), "-j", "DROP"],
                                       check=True)
                if scenario == "cut":
                    links = [d.link for d in registry if d.link is not None]
                    parts = [Path(d.data_dir) / "store" / "incoming" for d in registry]
                    cutter = threading.Thread(target=_cut_once,
                                              args=(links, parts, args.cut_s, lab_netns, done))
                    cutter.start()
                options = deploying.DeployOptions(canary=0, max_failures="0", retries=10,
                                                  backoff_s=1.0,
                                                  limit_bytes_per_s=args.bwlimit * 1e6)
                started = time.perf_counter()
                report = deploying.deploy(fleet, model, devices,
                                          Request(ctx=model.default_ctx), options)
                wall = time.perf_counter() - started
                done.set()
                if cutter is not None:
                    cutter.join()
                sizes = 0
                for p in report.plans:
                    if p.choice and p.choice.chosen:
                        art = fleet.artifacts.local(model, p.choice.chosen.variant)
                        sizes += art.size_bytes if art else 0
                sent = sum(o.bytes_sent for o in report.outcomes)
                bad = [f"{o.device}: {o.status} {o.reason}" for o in report.outcomes
                       if o.status != "deployed"]
                results.setdefault(scenario, []).append((wall, sent, sizes, "; ".join(bad)))
                print(f"{scenario:6s} {wall:7.1f} s  acknowledged {sent / MIB:7.1f} MiB of "
                      f"{sizes / MIB:.1f} MiB" + (f"  NOT DEPLOYED: {bad}" if bad else ""),
                      flush=True)
    finally:
        lab_down(fleet)
    clean = statistics.median(w for w, *_ in results["clean"])
    print()
    print("| run (4 devices, tiny-llama, --canary 0) | wall time | vs clean | re-sent |")
    print("|---|---|---|---|")
    labels = {"clean": "clean", "loss": f"{args.loss:.0%} loss on every link",
              "cut": f"one {args.cut_s:.0f} s cut of every link (stall timeout "
                     f"{args.stall_s:.0f} s)"}
    failed = False
    for scenario, runs in results.items():
        wall = statistics.median(w for w, *_ in runs)
        resent = statistics.median(max(0, s - size) for _, s, size, _ in runs)
        size = runs[0][2]
        failed |= any(bad for *_, bad in runs)
        print(f"| {labels[scenario]} | {wall:.1f} s | x{wall / clean:.2f} | "
              f"{resent / MIB:.1f} MiB ({resent / size:.1%} of {size / MIB:.0f} MiB) |")
    return 1 if failed else 0


def _cut_once(links: list[object], incoming: list[Path], cut_s: float, netns: object,
              done: threading.Event) -> None:
    """Once 16 MiB are on the devices (every upload under way), take every link down for
    ``cut_s``."""
    while not done.is_set():
        landed = 0
        for d in incoming:
            for p in d.iterdir() if d.exists() else ():
                if p.name.endswith(".part"):
                    try:
                        landed += p.stat().st_blocks * 512
                    except FileNotFoundError:
                        continue
        if landed >= 16 * MIB:
            break
        time.sleep(0.02)
    if done.is_set():
        print("the deploy ended before the cut", flush=True)
        return
    for link in links:
        netns.set_up(link, False)  # type: ignore[attr-defined]
    time.sleep(cut_s)
    for link in links:
        netns.set_up(link, True)  # type: ignore[attr-defined]


if __name__ == "__main__":
    sys.exit(main())
