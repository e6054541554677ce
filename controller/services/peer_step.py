"""The peer half of a device's UPLOADING step (controller.services.device_run): fetch the blob
from the peers its site's plan names, and say where the bytes came from.

A fetch that no peer can finish leaves the device a verified prefix; the step machine then
has the controller send the rest (the upload resumes after that prefix), so a device that
cannot reach its peers, or whose peers went away or sent a bad byte, still ends with the
verified blob.
"""

from __future__ import annotations

from controller.services.ports import DeviceJob, DeviceLink, PeerOrder, Route

MIB = 2**20


def mib(n: int) -> str:
    return f"{n / MIB:.1f} MiB"


def sending(job: DeviceJob, route: Route) -> str:
    """The reason of the UPLOADING step: what is sent, from where, and why."""
    art = job.artifact
    assert art is not None
    size = mib(art.size_bytes)
    if route.peers:
        names = ", ".join(p.name for p in route.peers)
        return (f"fetching {size} from peers of site {job.site} over its LAN ({names}, "
                f"nearest first){'; ' + route.note if route.note else ''}")
    return f"sending {size}" + (f" ({route.note})" if route.note else "")


def fetch_from_peers(link: DeviceLink, job: DeviceJob, route: Route, rollout: str
                     ) -> tuple[bool, str]:
    """Fetch from the route's peers; record the bytes each peer delivered on ``job``.
    Returns whether the device now has the whole blob (verified chunk by chunk; the step
    machine still has it verified whole), and a note for the step's reason."""
    art = job.artifact
    assert art is not None and route.chunks is not None
    got = link.fetch_from_peers(PeerOrder(art, route.chunks, job.device, route.peers, rollout))
    for name, n in got.received:
        job.peer_bytes[name] = job.peer_bytes.get(name, 0) + n
    job.bytes_from_peers += got.from_peers
    parts = []
    if got.resumed_bytes:
        parts.append(f"{mib(got.resumed_bytes)} already on the device")
    if got.received:
        parts.append(", ".join(f"{mib(n)} from {name}" for name, n in got.received if n))
    if got.dropped:
        parts.append("dropped " + "; ".join(got.dropped))
    note = ("; " + "; ".join(p for p in parts if p)) if any(parts) else ""
    if got.complete:
        return True, note
    return False, f"{note}; from peers no further ({got.failure}): the controller sent the rest"
