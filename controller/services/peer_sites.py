"""Sites for `fleet deploy`: which site each device is in (recorded with the rollout), the
peer options checked, and the runner's ``SiteRoutes`` built from the inventory (how the
devices of a site reach each other's agents) and the artifacts' chunk lists."""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

from controller.adapters.tables import Device
from controller.chunk_index import chunk_list
from controller.core.fanout import SiteDevice, check_subnet, site_of
from controller.core.hosts import valid_address
from controller.errors import UnknownDevice, UsageError
from controller.services.context import Fleet
from controller.services.ports import DeviceJob, PeerEndpoint
from controller.services.site_routes import SiteRoutes

PEER_ADDRESS_LABEL = "peer_address"  # where a device's peers reach its agent, if not its host
_LABEL_KEY = re.compile(r"[A-Za-z0-9_.-]+")


class PeerOptions(Protocol):
    @property
    def site_label(self) -> str: ...
    @property
    def site_subnets(self) -> tuple[str, ...]: ...
    @property
    def peer_degree(self) -> int: ...


def check_peer_options(options: PeerOptions) -> None:
    if not 1 <= options.peer_degree <= 16:
        raise UsageError("--peer-fanout must be 1..16",
                         hint="1 (the default) is a pipelined chain; 2-4 a shallower tree")
    if not _LABEL_KEY.fullmatch(options.site_label):
        raise UsageError(f"--site-label {options.site_label!r} is not a label name",
                         hint="letters, digits, '.', '_' and '-', e.g. --site-label store")
    for subnet in options.site_subnets:
        try:
            check_subnet(subnet)
        except ValueError:
            raise UsageError(f"--site-subnet {subnet!r} is not a subnet",
                             hint="e.g. --site-subnet 10.20.0.0/24") from None


def assign_sites(jobs: list[DeviceJob], devices: Sequence[Device],
                 options: PeerOptions) -> None:
    """Record each contacted device's site on its job (persisted with the rollout)."""
    by_name = {d.name: d for d in devices}
    for job in jobs:
        device = by_name.get(job.device)
        if job.artifact is not None and device is not None:
            job.site = site_of(SiteDevice(device.name, device.host, device.labels),
                               options.site_label, options.site_subnets)


def peer_endpoint(device: Device) -> PeerEndpoint | None:
    """Where the other devices of its site reach its agent; None when it cannot take part
    (no mutual TLS: no peer identity)."""
    if not device.tls:
        return None
    address = device.labels.get(PEER_ADDRESS_LABEL, "").strip() or device.host
    target = with_port(address, device.agent_port)
    if not valid_target(target):  # a label is free text: never a unix:/dns: target
        return None
    return PeerEndpoint(device.name, target)


def valid_target(target: str) -> bool:
    """``host:port`` (``[v6]:port``) with a valid address and port."""
    host, _, port = target.rpartition(":")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    return (valid_address(host) and host not in GRPC_SCHEMES and port.isdigit()
            and 0 < int(port) < 65536)


# gRPC reads "unix:1" as a socket path: a host of one of these names is not a host
GRPC_SCHEMES = frozenset({"unix", "unix-abstract", "dns", "ipv4", "ipv6", "vsock"})


def with_port(address: str, port: int) -> str:
    """``host``, ``host:port``, an IPv6 address or ``[v6]:port`` as ``host:port``."""
    if address.startswith("["):
        return address if "]:" in address else f"{address}:{port}"
    if address.count(":") == 1:
        return address
    return f"[{address}]:{port}" if ":" in address else f"{address}:{port}"


def site_routes(fleet: Fleet, jobs: list[DeviceJob], peers: dict[str, Any]
                ) -> SiteRoutes | None:
    """None for a rollout recorded before sites existed (its devices have no site)."""
    if not peers:
        return None
    endpoints = {}
    for job in jobs:
        if not job.site:
            continue
        try:
            endpoint = peer_endpoint(fleet.inventory.get_device(job.device))
        except UnknownDevice:
            continue
        if endpoint is not None:
            endpoints[job.device] = endpoint
    return SiteRoutes(jobs, endpoints,
                      lambda art: chunk_list(Path(art.path), art.sha256, art.size_bytes),
                      degree=int(peers.get("degree", 1)), enabled=bool(peers.get("enabled")),
                      present=fleet.inventory.present)
