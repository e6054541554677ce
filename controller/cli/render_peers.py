"""What an operator sees of sites while a deploy runs and after: a bar per device (with the
peer it reads from), a line per site (bytes from the controller vs between peers), and a
summary per site at the end."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from rich.progress import BarColumn, DownloadColumn, Progress, TransferSpeedColumn

from controller.cli.common import console, mib
from controller.services.deploying import Outcome
from controller.services.ports import DeviceJob


@dataclass(frozen=True)
class TransferView:
    upload: Callable[[str, int, int], None]  # (device, acknowledged, total) from us
    peer: Callable[[str, str, int, int], None]  # (device, peer, verified, total)
    job: Callable[[DeviceJob], None]  # each step: which site a device is in


@contextlib.contextmanager
def transfer_bars(enabled: bool = True) -> Iterator[TransferView]:
    """Rich bars per device and per site; no-op callbacks when disabled or piped."""
    if not enabled or not console.is_terminal:
        yield TransferView(lambda d, done, total: None, lambda d, s, done, total: None,
                           lambda job: None)
        return
    lock = threading.Lock()
    tasks: dict[str, Any] = {}
    site_tasks: dict[str, Any] = {}
    site_of: dict[str, str] = {}
    ours: dict[str, int] = {}  # acknowledged bytes from the controller, per device
    peers: dict[str, int] = {}  # verified bytes from peers, per device
    totals: dict[str, int] = {}
    with Progress("{task.description}", BarColumn(), DownloadColumn(), TransferSpeedColumn(),
                  console=console, transient=True) as bars:
        overall = bars.add_task("all devices", total=0)

        def refresh(device: str, total: int, label: str) -> None:
            if device not in tasks:
                tasks[device] = bars.add_task(label, total=total)
            totals[device] = total
            bars.update(tasks[device], description=label,
                        completed=ours.get(device, 0) + peers.get(device, 0))
            bars.update(overall, total=sum(totals.values()),
                        completed=sum(ours.values()) + sum(peers.values()))
            site = site_of.get(device, "")
            if not site:
                return
            members = [d for d, s in site_of.items() if s == site]
            line = (f"site {site}: {mib(sum(ours.get(d, 0) for d in members))} from the "
                    f"controller, {mib(sum(peers.get(d, 0) for d in members))} between peers")
            if site not in site_tasks:
                site_tasks[site] = bars.add_task(line, total=None)
            bars.update(site_tasks[site], description=line)

        def upload(device: str, done: int, total: int) -> None:
            with lock:
                ours[device] = done
                refresh(device, total, device)

        def peer(device: str, source: str, done: int, total: int) -> None:
            with lock:
                peers[device] = done
                refresh(device, total, f"{device} <- {source}" if source else device)

        def job(j: DeviceJob) -> None:
            if j.site:
                with lock:
                    site_of[j.device] = j.site

        yield TransferView(upload, peer, job)


def print_sites(outcomes: list[Outcome]) -> None:
    """One line per site: what crossed its uplink and what its devices gave each other."""
    sites: dict[str, list[Outcome]] = {}
    for o in outcomes:
        if o.site:
            sites.setdefault(o.site, []).append(o)
    for site, members in sorted(sites.items()):
        ours = sum(o.bytes_sent for o in members)
        theirs = sum(o.bytes_from_peers for o in members)
        seeded = [o.device for o in members if o.bytes_sent]
        console.print(f"site {site}: {len(members)} device(s); {mib(ours)} from the controller"
                      + (f" (to {', '.join(seeded)})" if seeded else "")
                      + f", {mib(theirs)} between peers", highlight=False)


def peers_cell(o: Outcome) -> str:
    """Where a device's bytes came from, for the outcome table."""
    if not o.peer_bytes:
        return "-"
    return ", ".join(f"{mib(n)} {name}" for name, n in sorted(o.peer_bytes.items()) if n)
