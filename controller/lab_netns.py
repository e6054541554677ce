"""Lab devices behind a real network link: a network namespace per device, joined to this
machine by a veth pair, optionally shaped with ``tc netem`` (delay, loss, rate). Needs root.

Addresses come from 198.18.0.0/15 (RFC 2544 benchmarking), one /30 per device: the host side
is 198.18.N.1, the device 198.18.N.2. Nothing else is routed there.
"""

from __future__ import annotations

import os
import shlex
import subprocess
from dataclasses import dataclass

from controller.errors import LabError

SSH_PORT = 2222
AGENT_PORT = 50051
INFERENCE_PORT = 50052
OPENAI_PORT = 8080


@dataclass(frozen=True)
class NetLink:
    netns: str
    host_if: str
    device_if: str
    address: str  # the device's address, reachable from this machine through the veth

    @property
    def exec_prefix(self) -> list[str]:
        return ["ip", "netns", "exec", self.netns]


def _ip(*args: str) -> None:
    result = subprocess.run(["ip", *args], capture_output=True, text=True)
    if result.returncode != 0:
        raise LabError(f"ip {' '.join(args)} failed: {result.stderr.strip()}",
                       hint="network namespaces need root and iproute2 (apt-get install "
                       "iproute2)")


def create(index: int, netem: str = "") -> NetLink:
    if os.geteuid() != 0:
        raise LabError("--netns needs root (network namespaces and veth pairs)",
                       hint="run as root, or drop --netns")
    tag = f"{os.getpid() % 100000}x{index}"
    link = NetLink(f"edgefleet-{tag}", f"efh{tag}"[:15], f"efd{tag}"[:15],
                   f"198.18.{index}.2")
    remove(link)
    _ip("netns", "add", link.netns)
    try:
        _ip("link", "add", link.host_if, "type", "veth", "peer", "name", link.device_if)
        _ip("link", "set", link.device_if, "netns", link.netns)
        _ip("addr", "add", f"198.18.{index}.1/30", "dev", link.host_if)
        _ip("link", "set", link.host_if, "up")
        _ip("netns", "exec", link.netns, "ip", "addr", "add", f"{link.address}/30", "dev",
            link.device_if)
        _ip("netns", "exec", link.netns, "ip", "link", "set", link.device_if, "up")
        _ip("netns", "exec", link.netns, "ip", "link", "set", "lo", "up")
        if netem:
            shape(link, netem)
    except LabError:
        remove(link)
        raise
    return link


def shape(link: NetLink, netem: str) -> None:
    """``tc netem`` on both directions of the link, e.g. ``delay 40ms loss 2%``."""
    spec = shlex.split(netem)
    for prefix, dev in (([], link.host_if), (link.exec_prefix, link.device_if)):
        result = subprocess.run([*prefix, "tc", "qdisc", "replace", "dev", dev, "root",
                                 "netem", *spec], capture_output=True, text=True)
        if result.returncode != 0:
            raise LabError(f"tc netem {netem!r} failed: {result.stderr.strip()}",
                           hint="e.g. --netem 'delay 40ms 10ms loss 2% rate 20mbit'")


def set_up(link: NetLink, up: bool) -> None:
    """Cut or restore the link (as if the device's Wi-Fi dropped)."""
    _ip("link", "set", link.host_if, "up" if up else "down")


def remove(link: NetLink) -> None:
    """Delete the namespace (which deletes its end of the veth, and so the pair)."""
    subprocess.run(["ip", "netns", "del", link.netns], capture_output=True)
    subprocess.run(["ip", "link", "del", link.host_if], capture_output=True)
