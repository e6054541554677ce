"""One copy per site: 8 lab devices on one LAN behind one shaped uplink, in one run:

1. one transfer alone: ``fleet deploy --stage-only`` to one device (the baseline);
2. today's direct push to all 8 (``--no-peers``): every copy crosses the uplink;
3. the peer path: the controller sends one copy to the site's seed, the others read it from
   each other over the LAN in a pipelined chain (``--peer-fanout`` sets the degree).

The lab is ``fleet lab up --netns --site-lan --uplink RATE``: each device in its own network
namespace, all on one bridge (the store's LAN, unshaped veth), this machine reaching them
over one veth pair limited with ``tbf`` (the uplink). Each run starts from empty stores (the
blob is deleted from every device between runs) and stages the same file (tiny-llama q8_0,
38.8 MiB) on every device with ``--concurrency 8``. Printed per scenario: the wall time of the
deploy (median of the rounds, interleaved), its ratio to one transfer (target for the peer
path <= 1.3; a sequential push is 8), and the bytes this machine sent into the site over the
uplink (target for the peer path: one copy). Holds /tmp/edgefleet-netns.lock while it runs.

Usage: python bench/fanout.py [--rounds 3] [--uplink 100mbit] [--devices 8] [--peer-fanout 1]
"""

from __future__ import annotations

import argparse
import fcntl
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
MIB = 1024 * 1024
PROFILE = "lab-orin-nano-8gb"  # gets q8_0 (38.8 MiB): one file for every device


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--uplink", default="100mbit")
    parser.add_argument("--devices", type=int, default=8)
    parser.add_argument("--peer-fanout", type=int, default=1)
    args, _ = parser.parse_known_args()
    if os.geteuid() != 0:
        print("bench/fanout.py needs root (network namespaces, a bridge, tc); skipped")
        return 0
    with tempfile.TemporaryDirectory() as tmp, open("/tmp/edgefleet-netns.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        os.environ["FLEET_HOME"] = str(Path(tmp) / "home")
        os.environ.setdefault("FLEET_AGENT_SCRUB_MBPS", "0")
        return run(args)


def _forget(store: Path, sha: str) -> None:
    """Empty a device's store of the blob, as if it never had it."""
    for path in (store / "blobs" / sha, store / "incoming" / sha,
                 store / "incoming" / f"{sha}.part", store / "incoming" / f"{sha}.ranges"):
        path.unlink(missing_ok=True)


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
    variant = model.variant("q8_0")
    assert variant is not None
    art = fleet.artifacts.verify(model, variant)
    results: dict[str, list[tuple[float, int, int]]] = {}
    failed: list[str] = []
    try:
        lab_up(fleet, args.devices, [PROFILE], netns=True, site_lan=True, uplink=args.uplink,
               fresh=True)
        registry = read_registry(settings.lab_dir())
        uplink = registry[0].uplink_if
        devices = [fleet.inventory.get_device(d.name) for d in registry]
        stores = [Path(d.data_dir) / "store" for d in registry]
        scenarios = {
            "one transfer alone": (devices[:1], True),
            f"direct push to all {args.devices} (--no-peers)": (devices, False),
            f"peer path, {args.devices} devices": (devices, True),
        }
        print(f"{args.devices} lab devices on one LAN behind a {args.uplink} uplink; "
              f"{art.size_bytes / MIB:.1f} MiB to stage on each; load average "
              f"{os.getloadavg()[0]:.1f}", flush=True)
        for round_no in range(args.rounds):
            for name, (chosen, peers) in scenarios.items():
                for store in stores:
                    _forget(store, art.sha256)
                os.sync()
                options = deploying.DeployOptions(
                    concurrency=args.devices, canary=0, max_failures="0", stage_only=True,
                    peers=peers, peer_degree=args.peer_fanout)
                tx0, _ = lab_netns.uplink_bytes(uplink)
                started = time.perf_counter()
                report = deploying.deploy(fleet, model, chosen, Request(ctx=model.default_ctx),
                                          options)
                wall = time.perf_counter() - started
                tx1, _ = lab_netns.uplink_bytes(uplink)
                peers_bytes = sum(o.bytes_from_peers for o in report.outcomes)
                bad = [f"{o.device}: {o.status} {o.reason}" for o in report.outcomes
                       if o.status != "staged"]
                failed += bad
                results.setdefault(name, []).append((wall, tx1 - tx0, peers_bytes))
                print(f"round {round_no + 1} {name:34s} {wall:6.2f} s  uplink "
                      f"{(tx1 - tx0) / MIB:6.1f} MiB  between peers {peers_bytes / MIB:6.1f} "
                      "MiB" + (f"  NOT STAGED: {bad}" if bad else ""), flush=True)
    finally:
        lab_down(fleet)
    alone = statistics.median(w for w, _, _ in results["one transfer alone"])
    print()
    print(f"| {args.devices} devices, {art.size_bytes / MIB:.1f} MiB, {args.uplink} uplink "
          f"(median of {args.rounds}) | wall time | vs one transfer | over the uplink | "
          "copies over the uplink | between peers |")
    print("|---|---|---|---|---|---|")
    for name, runs in results.items():
        wall = statistics.median(w for w, _, _ in runs)
        up = statistics.median(u for _, u, _ in runs)
        lan = statistics.median(p for _, _, p in runs)
        print(f"| {name} | {wall:.2f} s | {wall / alone:.2f}x | {up / MIB:.1f} MiB | "
              f"{up / art.size_bytes:.2f} | {lan / MIB:.1f} MiB |")
    best = {name: min(w for w, _, _ in runs) for name, runs in results.items()}
    print(f"(best of the rounds: peer path {best[list(results)[2]] / best[list(results)[0]]:.2f}x"
          f", direct {best[list(results)[1]] / best[list(results)[0]]:.2f}x; targets: peer path "
          "<= 1.3x and one copy over the uplink; a sequential push is 8x)")
    if failed:
        print("FAILED: " + "; ".join(failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
