"""How long `fleet` takes to start: whole-process wall time of `fleet --help`,
`fleet device list` and `fleet status --json --no-collect` against a database of --devices
devices, beside the baseline `python -c pass` run in the same rounds (interleaved, so a busy
machine slows both alike). Prints the median of --runs per command, its ratio to the bare
interpreter, and the time above it; targets: `--help` and `device list` under 0.3 s.

Usage: python bench/cli_startup.py [--runs 15] [--devices 50]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TARGET_S = {"fleet --help": 0.3, "fleet device list": 0.3}


def _fleet() -> list[str]:
    script = Path(sys.executable).with_name("fleet")
    if script.exists():
        return [str(script)]
    return [sys.executable, "-c", "from controller.cli.app import run; run()"]


def _fill(home: Path, devices: int) -> None:
    """A database at the current schema with ``devices`` devices in nested groups."""
    env = {**os.environ, "FLEET_HOME": str(home)}
    code = (
        "import json\n"
        "from controller.adapters.tables import Device\n"
        "from controller.services.context import Fleet\n"
        "f = Fleet.open()\n"
        "f.inventory.add_group('site-a', ['europe'])\n"
        f"for i in range({devices}):\n"
        "    f.inventory.add_device(Device(name=f'kiosk-{i:03d}', host=f'10.0.0.{i % 250}',\n"
        "        profile='rpi5-8gb', labels_json=json.dumps({'site': 'berlin'})),\n"
        "        ['site-a' if i % 2 else 'kiosks'])\n"
    )
    subprocess.run([sys.executable, "-c", code], env=env, check=True)


def _time(cmd: list[str], env: dict[str, str]) -> float:
    started = time.perf_counter()
    done = subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed: {done.stderr.decode()[-300:]}")
    return elapsed


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--devices", type=int, default=50)
    args, _ = parser.parse_known_args()
    home = Path(tempfile.mkdtemp(prefix="edgefleet-cli-bench-"))
    try:
        _fill(home, args.devices)
        env = {**os.environ, "FLEET_HOME": str(home)}
        env.pop("FLEET_DB_URL", None)
        fleet = _fleet()
        commands = {
            "python -c pass": [sys.executable, "-c", "pass"],
            "fleet --help": [*fleet, "--help"],
            "fleet device list": [*fleet, "device", "list"],
            "fleet device list --json": [*fleet, "device", "list", "--json"],
            "fleet status --json --no-collect": [*fleet, "status", "--json", "--no-collect"],
        }
        for cmd in commands.values():  # warm the page cache and .pyc files once
            _time(cmd, env)
        load_before = os.getloadavg()
        times: dict[str, list[float]] = {name: [] for name in commands}
        for _ in range(args.runs):
            for name, cmd in commands.items():
                times[name].append(_time(cmd, env))
        load_after = os.getloadavg()
    finally:
        shutil.rmtree(home, ignore_errors=True)
    bare = statistics.median(times["python -c pass"])
    print(f"{os.cpu_count()} CPUs, load average {load_before[0]:.2f} before and "
          f"{load_after[0]:.2f} after; {args.runs} runs each, interleaved; "
          f"{args.devices} devices in the database")
    print(f"{'command':36} {'median':>8} {'min':>8} {'x bare':>7} {'above bare':>11}  target")
    for name, samples in times.items():
        median = statistics.median(samples)
        target = TARGET_S.get(name)
        verdict = ""
        if target is not None:
            verdict = f"< {target:.1f} s " + ("met" if median < target else "MISSED")
        print(f"{name:36} {median:7.3f}s {min(samples):7.3f}s {median / bare:7.1f} "
              f"{median - bare:10.3f}s  {verdict}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
