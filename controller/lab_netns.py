"""Lab devices behind a real network link: a network namespace per device, joined to this
machine by a veth pair, optionally shaped with ``tc netem`` (delay, loss, rate). Needs root.

Addresses come from 198.18.0.0/15 (RFC 2544 benchmarking), one /30 per device: the host side
is 198.18.N.1, the device 198.18.N.2. Nothing else is routed there.

A **site** (``create_site`` + ``join_site``): the devices' namespaces plug into one LAN
bridge that lives in a namespace of its own (the site's switch), and this machine reaches
that LAN over one veth pair, the site's uplink, optionally rate-limited with ``tbf`` in both
directions. Devices talk to each other over the bridge, never through the uplink; what the
controller sends them all crosses it. This machine is 198.19.0.1/24, device N 198.19.0.(10+N).
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
    host_netns: str = ""  # where host_if lives: "" this machine, else a site's switch

    @property
    def exec_prefix(self) -> list[str]:
        return ["ip", "netns", "exec", self.netns]


SITE_NET = "198.19.0"
SITE_HOST = f"{SITE_NET}.1"


@dataclass(frozen=True)
class SiteLan:
    netns: str  # the site's switch: the LAN bridge and the uplink's far end
    bridge: str
    uplink_if: str  # this machine's end of the uplink (its tx bytes: what went to the site)
    site_if: str

    def address(self, index: int) -> str:
        return f"{SITE_NET}.{10 + index}"


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
    where = ["-n", link.host_netns] if link.host_netns else []
    _ip(*where, "link", "set", link.host_if, "up" if up else "down")


def remove(link: NetLink) -> None:
    """Delete the namespace (which deletes its end of the veth, and so the pair)."""
    subprocess.run(["ip", "netns", "del", link.netns], capture_output=True)
    where = ["-n", link.host_netns] if link.host_netns else []
    subprocess.run(["ip", *where, "link", "del", link.host_if], capture_output=True)


def _tbf(prefix: list[str], dev: str, rate: str) -> None:
    # a burst of 256 KiB: veth hands tbf segmentation-offloaded packets of up to 64 KiB
    result = subprocess.run([*prefix, "tc", "qdisc", "replace", "dev", dev, "root", "tbf",
                             "rate", rate, "burst", "256kb", "latency", "100ms"],
                            capture_output=True, text=True)
    if result.returncode != 0:
        raise LabError(f"tc tbf rate {rate!r} failed: {result.stderr.strip()}",
                       hint="e.g. --uplink 100mbit")


def create_site(uplink_rate: str = "") -> SiteLan:
    """The site's switch namespace with its LAN bridge, and the uplink to this machine
    (``tbf`` at ``uplink_rate`` both ways, e.g. ``100mbit``)."""
    if os.geteuid() != 0:
        raise LabError("--site-lan needs root (network namespaces, a bridge, veth pairs)",
                       hint="run as root, or drop --site-lan")
    tag = f"{os.getpid() % 100000}"
    site = SiteLan(f"edgefleet-site-{tag}", f"efb{tag}"[:15], f"efu{tag}"[:15],
                   f"efs{tag}"[:15])
    remove_site(site.netns, site.uplink_if)
    _ip("netns", "add", site.netns)
    try:
        _ip("-n", site.netns, "link", "add", site.bridge, "type", "bridge")
        _ip("-n", site.netns, "link", "set", site.bridge, "up")
        _ip("link", "add", site.uplink_if, "type", "veth", "peer", "name", site.site_if)
        _ip("link", "set", site.site_if, "netns", site.netns)
        _ip("-n", site.netns, "link", "set", site.site_if, "master", site.bridge)
        _ip("-n", site.netns, "link", "set", site.site_if, "up")
        _ip("addr", "add", f"{SITE_HOST}/24", "dev", site.uplink_if)
        _ip("link", "set", site.uplink_if, "up")
        if uplink_rate:
            _tbf([], site.uplink_if, uplink_rate)
            _tbf(["ip", "netns", "exec", site.netns], site.site_if, uplink_rate)
    except LabError:
        remove_site(site.netns, site.uplink_if)
        raise
    return site


def join_site(site: SiteLan, index: int) -> NetLink:
    """Device ``index``'s namespace, plugged into the site's bridge."""
    tag = f"{os.getpid() % 100000}x{index}"
    link = NetLink(f"edgefleet-{tag}", f"efp{tag}"[:15], f"efd{tag}"[:15],
                   site.address(index), host_netns=site.netns)
    remove(link)
    _ip("netns", "add", link.netns)
    try:
        _ip("-n", site.netns, "link", "add", link.host_if, "type", "veth", "peer", "name",
            link.device_if)
        _ip("-n", site.netns, "link", "set", link.device_if, "netns", link.netns)
        _ip("-n", site.netns, "link", "set", link.host_if, "master", site.bridge)
        _ip("-n", site.netns, "link", "set", link.host_if, "up")
        _ip("-n", link.netns, "addr", "add", f"{link.address}/24", "dev", link.device_if)
        _ip("-n", link.netns, "link", "set", link.device_if, "up")
        _ip("-n", link.netns, "link", "set", "lo", "up")
    except LabError:
        remove(link)
        raise
    return link


def remove_site(netns: str, uplink_if: str = "") -> None:
    """Delete the site's switch (its bridge and the uplink pair go with it)."""
    subprocess.run(["ip", "netns", "del", netns], capture_output=True)
    if uplink_if:
        subprocess.run(["ip", "link", "del", uplink_if], capture_output=True)


def uplink_bytes(uplink_if: str) -> tuple[int, int]:
    """(bytes this machine sent into the site, bytes it received from it) so far."""
    base = f"/sys/class/net/{uplink_if}/statistics"
    with open(f"{base}/tx_bytes") as tx, open(f"{base}/rx_bytes") as rx:
        return int(tx.read()), int(rx.read())
