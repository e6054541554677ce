"""One copy per site: which devices form a site, and how a blob spreads inside one (pure).

A **site** is a set of devices that reach each other over a LAN: the devices sharing the
value of a label (``site`` by default), or, for devices without it, those whose address lies
in one declared subnet. A device in no site gets its blobs from the controller, as before.

Inside a site, per blob, devices are **ordered**: those that already hold the blob first
(each a root), then the others in rollout order. With no holder, the first device is the
**seed**: the one device the controller sends the blob to. Every other device hangs from an
earlier one, ``degree`` children per device in breadth-first order: degree 1 is a chain
(each device receives once and sends once, so a pipelined chain moves a blob through the site
at the pace of one link), a larger degree a tree (shallower: fewer hops of latency and fewer
devices behind any one failure, at the cost of an upstream sending several copies at once).
A device's **sources** are its ancestors nearest first, then the other holders: if its
parent dies it resumes from the next one up.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

CONTROLLER = "controller"  # the source name of bytes sent by the controller


@dataclass(frozen=True)
class ChunkList:
    """The sha256 of each ``chunk_bytes`` chunk of a file (agent.peer_contract)."""

    chunk_bytes: int
    digests: tuple[bytes, ...]


@dataclass(frozen=True)
class SiteDevice:
    """What site assignment looks at: the name, the address the controller has for it, its
    labels."""

    name: str
    address: str
    labels: Mapping[str, str] = field(default_factory=dict)


def site_of(device: SiteDevice, label: str, subnets: Sequence[str]) -> str:
    """The device's site: its ``label`` value, else the first declared subnet holding its
    address (named by the subnet), else "" (no site)."""
    value = device.labels.get(label, "").strip()
    if value:
        return value
    try:
        address = ipaddress.ip_address(device.address)
    except ValueError:
        return ""  # a host name: only a label puts it in a site
    for subnet in subnets:
        network = ipaddress.ip_network(subnet, strict=False)
        if address.version == network.version and address in network:
            return str(network)
    return ""


def check_subnet(spec: str) -> str:
    """The subnet as written, or ValueError."""
    ipaddress.ip_network(spec, strict=False)
    return spec


@dataclass(frozen=True)
class SitePlan:
    site: str
    order: tuple[str, ...]  # holders first, then the others in rollout order
    holders: frozenset[str]
    seed: str  # the device the controller sends to ("" when a device already holds it)
    parents: Mapping[str, str]  # device -> the device it reads from ("" for a root)
    degree: int

    def ancestors(self, name: str) -> tuple[str, ...]:
        """From the parent up to the root, nearest first."""
        out: list[str] = []
        parent = self.parents.get(name, "")
        while parent:
            out.append(parent)
            parent = self.parents.get(parent, "")
        return tuple(out)

    def children(self, name: str) -> tuple[str, ...]:
        return tuple(d for d in self.order if self.parents.get(d) == name)

    def sources(self, name: str) -> tuple[str, ...]:
        """Where ``name`` may read from, nearest first: its ancestors, then the other
        holders. Empty for a root."""
        if name in self.holders or name == self.seed:
            return ()
        up = self.ancestors(name)
        return up + tuple(h for h in self.order if h in self.holders and h not in up)


def plan_site(site: str, members: Sequence[str], holders: Sequence[str] = (),
              degree: int = 1) -> SitePlan:
    """Plan one blob's spread over ``members`` (in rollout order). ``holders``: members that
    already hold the blob verified. ValueError for a degree below 1."""
    if degree < 1:
        raise ValueError(f"fan-out degree {degree} < 1")
    held = [m for m in members if m in set(holders)]
    order = tuple(held + [m for m in members if m not in set(held)])
    roots = len(held) or min(1, len(order))
    parents = {name: "" for name in order[:roots]}
    for i in range(roots, len(order)):
        parents[order[i]] = order[(i - roots) // degree]
    seed = "" if held or not order else order[0]
    return SitePlan(site, order, frozenset(held), seed, parents, degree)


def live_sources(plan: SitePlan, name: str, started: frozenset[str]) -> tuple[str, ...]:
    """``name``'s sources that can deliver now: holders, and devices that have started
    receiving (a device not started yet has nothing to give)."""
    return tuple(s for s in plan.sources(name) if s in plan.holders or s in started)
