"""Where each device of a rollout gets its blob: the runner's live view of every site.

When a device is about to receive a blob, the plan of its site for that blob is made from
what the rollout knows at that moment (``controller.core.fanout.plan_site``): the devices of
the site that receive the same file, in rollout order, those that hold it already first (held
when the rollout was planned, or verified during it). The device reads from its sources that
can deliver now (holders, and devices that have started); the site's seed is sent the blob by
the controller, front to back so the others can read it as it arrives. A device in no site,
alone in its site, or with peers off gets the blob from the controller as before. A device
removed from the fleet during the rollout (``fleet device remove``: its certificates revoked)
takes no part from then on: nobody is sent to read from it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Collection, Mapping

from controller.core.fanout import ChunkList, live_sources, plan_site
from controller.core.steps import Step
from controller.services.ports import Artifact, DeviceJob, PeerEndpoint, Route

# a device at one of these steps holds the blob verified
HOLDING = frozenset({Step.STAGED, Step.LOADING, Step.ON_TRIAL, Step.CHECKING, Step.COMMITTED,
                     Step.UNCHANGED})


class SiteRoutes:
    def __init__(self, jobs: list[DeviceJob], endpoints: Mapping[str, PeerEndpoint],
                 chunks: Callable[[Artifact], ChunkList], degree: int = 1,
                 enabled: bool = True,
                 present: Callable[[Collection[str]], Collection[str]] = lambda names: names
                 ) -> None:
        """``endpoints``: the devices that may take part (a peer identity, an address the
        site reaches); ``chunks``: the artifact's chunk list (hashed once, then cached);
        ``present``: which of some devices are still in the fleet, asked at each route. A
        job ``held`` (its store held the file when the rollout was planned) is a source from
        the start (it checks every chunk it serves, so a copy gone bad since only costs a
        try)."""
        self.jobs = jobs
        self._present = present
        self.endpoints = endpoints
        self.degree = degree
        self.enabled = enabled
        self._chunks = chunks
        self._lock = threading.Lock()
        self._chunk_lock = threading.Lock()
        self._started: set[str] = set()
        self._excluded: dict[str, str] = {}  # device -> why it takes no part (its agent)
        self._chunk_cache: dict[str, ChunkList] = {}

    def started(self, device: str) -> None:
        with self._lock:
            self._started.add(device)

    def finished(self, device: str) -> None:
        with self._lock:
            self._started.discard(device)

    def exclude(self, device: str, why: str) -> None:
        """Leave ``device`` out of its site's plan from now on (it neither reads from its
        peers nor serves them): its agent cannot share blobs."""
        with self._lock:
            self._excluded[device] = why

    def route(self, job: DeviceJob) -> Route:
        if not self.enabled:
            return Route(note="peers off (--no-peers)") if job.site else Route()
        art = job.artifact
        if not job.site or art is None:
            return Route()
        if job.device not in self.endpoints:
            return Route(note=f"site {job.site}, but it has no peer certificate (enrolled "
                         "before peer transfers, or without TLS): `fleet device enroll` again")
        with self._lock:
            excluded = dict(self._excluded)
        if job.device in excluded:
            return Route(note=f"site {job.site}, but {excluded[job.device]}")
        members = [j.device for j in self.jobs if j.site == job.site
                   and j.sha256 == art.sha256 and j.device in self.endpoints
                   and j.device not in excluded]
        present = set(self._present(members))
        members = [m for m in members if m in present or m == job.device]
        if len(members) < 2:
            return Route(note=f"the only device of site {job.site} receiving this file")
        holders = [j.device for j in self.jobs if j.device in members and (
            j.step in HOLDING or j.held)]
        with self._lock:
            started = frozenset(self._started)
        plan = plan_site(job.site, members, holders, self.degree)
        sources = live_sources(plan, job.device, started)
        if sources:
            return Route(tuple(self.endpoints[s] for s in sources), self.chunks(art))
        if plan.seed == job.device:
            below = len(members) - 1
            return Route(serves_peers=True, note=f"the seed of site {job.site}: its {below} "
                         f"other device{'s' if below > 1 else ''} read from it as it arrives")
        return Route(note=f"no device of site {job.site} holds or receives it yet")

    def chunks(self, art: Artifact) -> ChunkList:
        with self._chunk_lock:
            if art.sha256 not in self._chunk_cache:
                self._chunk_cache[art.sha256] = self._chunks(art)
            return self._chunk_cache[art.sha256]
