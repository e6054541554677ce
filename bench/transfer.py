"""Transfers over real sshd (a local lab), in one run:

1. throughput of a 256 MiB push (paramiko SFTP) vs OpenSSH ``scp`` of the same file over the
   same loopback link (target ratio >= 0.9);
2. bytes sent to finish after the connection is cut at 90 % (target <= 15 % of the file);
3. fan-out of a 64 MiB file to 8 lab devices, concurrent vs one after the other;
4. the 64 MiB file over a long link (a userspace proxy adding a round-trip delay): one SFTP
   stream, four channels, scp.

Usage: python bench/transfer.py [--mib 256] [--devices 8] [--rounds 5] [--rtt-ms 60]
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
MIB = 1024 * 1024


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--mib", type=int, default=256)
    parser.add_argument("--devices", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--rtt-ms", type=float, default=60.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["FLEET_HOME"] = str(Path(tmp) / "home")
        from controller.adapters.sftp_limits import write_size
        from controller.adapters.ssh import sha256_prefix
        from controller.adapters.ssh_parallel import push_ranges
        from controller.errors import TransferInterrupted
        from controller.lab import child_pids, read_registry
        from controller.services.context import Fleet
        from controller.services.lab_fleet import lab_down, lab_up

        fleet = Fleet.open()
        lab_up(fleet, args.devices, ["lab-n100-16gb"], agents=False)
        try:
            devices = [fleet.inventory.get_device(f"lab-{i + 1}") for i in range(args.devices)]
            registry = read_registry(Path(tmp) / "home" / "lab")
            blob = Path(tmp) / "blob.bin"
            with blob.open("wb") as fh:
                for _ in range(args.mib):
                    fh.write(os.urandom(MIB))
            size = blob.stat().st_size
            d0 = devices[0]
            remote_dir = str(Path(registry[0].directory) / "data")

            # 1. throughput, interleaved rounds (this host's speed drifts between runs),
            # each run on a settled disk:
            # one SFTP stream, four channels (what deploy uses >= 64 MiB), and scp
            speeds: dict[str, list[float]] = {"single": [], "ours": [], "scp": []}
            ssh = fleet.transfer.connect(fleet.ssh_target(d0))
            with ssh.open_sftp() as sftp:
                request = write_size(sftp)
            transport = ssh.get_transport()
            cipher = transport.local_cipher if transport else "?"
            for _ in range(args.rounds):
                settle(remote_dir)
                started = time.perf_counter()
                fleet.transfer.push(ssh, blob, remote_dir, "copy")
                speeds["single"].append(size / (time.perf_counter() - started))
                settle(remote_dir)
                started = time.perf_counter()
                push_ranges(ssh, blob, remote_dir, "copy4", 4, 30.0)
                speeds["ours"].append(size / (time.perf_counter() - started))
                settle(remote_dir)
                started = time.perf_counter()
                subprocess.run(["scp", "-q", "-o", "BatchMode=yes", "-o",
                                f"UserKnownHostsFile={fleet.transfer.known_hosts}", "-i",
                                d0.key_path, "-P", str(d0.ssh_port), str(blob),
                                f"{d0.user}@{d0.host}:{remote_dir}/scp-copy"], check=True)
                speeds["scp"].append(size / (time.perf_counter() - started))
            settle(remote_dir)
            ssh.close()
            single, ours, scp = (statistics.median(speeds[k]) for k in ("single", "ours", "scp"))
            # each round's runs are neighbours in time: their ratio cancels the host's drift
            paired = statistics.median(o / s for o, s in zip(speeds["ours"], speeds["scp"],
                                                              strict=True))

            def runs(key: str) -> str:
                return ", ".join(f"{v / MIB:.0f}" for v in speeds[key])

            print(f"transfer: {args.mib} MiB over loopback to a lab sshd, {args.rounds} "
                  f"interleaved rounds, medians (cipher {cipher}, SFTP writes of {request} B)")
            print(f"  paramiko, 1 stream : {single / MIB:7.1f} MiB/s  [{runs('single')}]"
                  f"  ratio {single / scp:.2f}")
            print(f"  paramiko, 4 streams: {ours / MIB:7.1f} MiB/s  [{runs('ours')}]"
                  "  (what deploy uses)")
            print(f"  OpenSSH scp        : {scp / MIB:7.1f} MiB/s  [{runs('scp')}]")
            print(f"  ratio {paired:.2f} (median of the rounds' ratios; of the medians "
                  f"{ours / scp:.2f}; target >= 0.9)")

            # 2. resume after a cut at 90 %
            part = Path(remote_dir) / "resumed.part"
            done = threading.Event()

            def cut() -> None:
                while not done.is_set():
                    if part.exists() and part.stat().st_size >= 0.9 * size:
                        for child in child_pids(registry[0].sshd_pid):
                            os.kill(child, signal.SIGKILL)
                        return
                    time.sleep(0.005)

            watcher = threading.Thread(target=cut)
            watcher.start()
            ssh = fleet.transfer.connect(fleet.ssh_target(d0))
            try:
                fleet.transfer.push(ssh, blob, remote_dir, "resumed")
                first = size
            except TransferInterrupted as exc:
                first = exc.sent
            finally:
                done.set()
                watcher.join()
            staged = part.stat().st_size if part.exists() else 0
            assert sha256_prefix(blob, staged) == sha256_prefix(part, staged)
            ssh = fleet.transfer.connect(fleet.ssh_target(d0))
            second = fleet.transfer.push(ssh, blob, remote_dir, "resumed", resume_from=staged)
            ssh.close()
            print(f"  cut after {first / MIB:.0f} MiB; {staged / MIB:.0f} MiB were on the "
                  f"device; the resume sent {second / MIB:.1f} MiB = {second / size:.1%} of "
                  "the file (target <= 15 %)")

            # 3. fan-out
            small = Path(tmp) / "small.bin"
            small.write_bytes(blob.read_bytes()[: 64 * MIB])

            def push(i: int) -> None:
                ssh = fleet.transfer.connect(fleet.ssh_target(devices[i]))
                try:
                    fleet.transfer.push(ssh, small, str(Path(registry[i].directory) / "data"),
                                        "fan")
                finally:
                    ssh.close()

            started = time.perf_counter()
            for i in range(args.devices):
                push(i)
            sequential = time.perf_counter() - started
            started = time.perf_counter()
            with ThreadPoolExecutor(max_workers=args.devices) as pool:
                list(pool.map(push, range(args.devices)))
            concurrent = time.perf_counter() - started
            print(f"  fan-out 64 MiB to {args.devices} devices: sequential "
                  f"{sequential:.1f} s, concurrent {concurrent:.1f} s "
                  f"(x{sequential / concurrent:.2f})")

            # 4. a long link: what the four channels are for (one SSH channel carries at most
            # the server's window, 2 MiB on OpenSSH, per round trip; scp has the same limit)
            long_link(fleet, d0, small, remote_dir, args.rtt_ms)
        finally:
            lab_down(fleet)


def settle(directory: str) -> None:
    """Start each timed run alike: no earlier copy to replace, no dirty pages of the last run
    being written back under it (that alone swung runs here by +-25 %)."""
    for path in Path(directory).iterdir():
        path.unlink()
    os.sync()


def long_link(fleet: Any, device: Any, blob: Path, remote_dir: str, rtt_ms: float) -> None:
    from _delay_proxy import DelayProxy  # beside this script

    from controller.adapters.ssh_parallel import push_ranges

    proxy = DelayProxy((device.host, device.ssh_port), rtt_ms / 2000)
    try:
        # the proxy's address presents the device's host key: trust it under that name too
        known = fleet.transfer.known_hosts
        entry = f"[{device.host}]:{device.ssh_port} "
        keys = [line.replace(entry, f"[127.0.0.1]:{proxy.port} ", 1)
                for line in known.read_text().splitlines() if line.startswith(entry)]
        with known.open("a") as fh:
            fh.write("\n".join(keys) + "\n")
        target = replace(fleet.ssh_target(device), host="127.0.0.1", port=proxy.port)
        size = blob.stat().st_size
        ssh = fleet.transfer.connect(target)
        started = time.perf_counter()
        fleet.transfer.push(ssh, blob, remote_dir, "long1")
        single = size / (time.perf_counter() - started)
        started = time.perf_counter()
        push_ranges(ssh, blob, remote_dir, "long4", 4, 60.0)
        ours = size / (time.perf_counter() - started)
        ssh.close()
        started = time.perf_counter()
        subprocess.run(["scp", "-q", "-o", "BatchMode=yes", "-o", f"UserKnownHostsFile={known}",
                        "-i", device.key_path, "-P", str(proxy.port), str(blob),
                        f"{device.user}@127.0.0.1:{remote_dir}/long-scp"], check=True)
        scp = size / (time.perf_counter() - started)
    finally:
        proxy.close()
    print(f"  long link ({rtt_ms:.0f} ms round trip, userspace delay proxy), "
          f"{size // MIB} MiB: paramiko 1 stream {single / MIB:.1f} MiB/s, 4 streams "
          f"{ours / MIB:.1f} MiB/s, scp {scp / MIB:.1f} MiB/s (4 streams / scp = "
          f"{ours / scp:.2f})")


if __name__ == "__main__":
    main()
