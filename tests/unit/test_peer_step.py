"""The peer branches of a device's UPLOADING step and the runner's site routes, against the
in-memory ports (tests/unit/fakes.py): a device reads from its site's peers nearest first; a
dead peer is passed over, a peer that sends a bad chunk is dropped, and when no peer can
finish the controller sends the rest after the verified prefix."""

from __future__ import annotations

from controller.core.fanout import ChunkList
from controller.core.steps import Step
from controller.errors import Unreachable
from controller.services.device_run import DeviceRun, RunSettings
from controller.services.ports import (
    Artifact,
    DeviceJob,
    PeerEndpoint,
    Rollout,
    Route,
)
from controller.services.rollout_runner import Policy, Runner
from controller.services.site_routes import SiteRoutes
from tests.unit.fakes import FakeDevice, FakeFleet, MemoryRolloutLog, refused

NEW = Artifact("m", "q4", "gguf", "a" * 64, 1000, "/models/m-q4.gguf")
CHUNKS = ChunkList(4096, (b"\0" * 32,))
P1, P2 = PeerEndpoint("p1", "10.0.0.2:50051"), PeerEndpoint("p2", "10.0.0.3:50051")
VIA_PEERS = Route((P1, P2), CHUNKS)


def _job(name: str = "d1", position: int = 0, site: str = "shop") -> DeviceJob:
    return DeviceJob(device=name, position=position, wave=0, step=Step.PLANNED, artifact=NEW,
                     n_ctx=512, memory_bytes=10, choice="fits", site=site)


def _fleet(**peers: dict[str, object]) -> FakeFleet:
    """d1 receives; p1 and p2 hold the blob unless told otherwise."""
    made = []
    for name in ("p1", "p2"):
        kw = {"blobs": {NEW.sha256}, **peers.get(name, {})}
        made.append(FakeDevice(name, **kw))  # type: ignore[arg-type]
    return FakeFleet([FakeDevice("d1"), *made])


def _stage(fleet: FakeFleet, route: Route, job: DeviceJob | None = None) -> DeviceJob:
    job = job or _job()
    return DeviceRun("r1", job, fleet.connect, lambda j, r: None,
                     RunSettings(stage_only=True, route=lambda j: route)).run()


def test_a_device_reads_the_whole_blob_from_its_nearest_peer() -> None:
    fleet = _fleet()
    job = _stage(fleet, VIA_PEERS)
    d1 = fleet.devices["d1"]
    assert job.step is Step.STAGED and NEW.sha256 in d1.blobs
    assert job.bytes_sent == 0 and d1.sent == 0 and "upload" not in d1.calls
    assert job.peer_bytes == {"p1": 1000} and job.bytes_from_peers == 1000
    assert "1000" not in job.reason and "from p1" in job.reason
    assert d1.fetch_orders[0].sources == (P1, P2) and d1.fetch_orders[0].receiver == "d1"


def test_a_dead_peer_is_passed_over_for_the_next_one_up() -> None:
    fleet = _fleet()
    fleet.away.add("p1")
    job = _stage(fleet, VIA_PEERS)
    assert job.step is Step.STAGED and job.peer_bytes == {"p2": 1000} and job.bytes_sent == 0


def test_a_peer_that_sends_a_bad_chunk_is_dropped_and_what_it_sent_well_is_kept() -> None:
    fleet = _fleet()
    fleet.bad_peers["p1"] = 400
    job = _stage(fleet, VIA_PEERS)
    assert job.step is Step.STAGED and job.bytes_sent == 0
    assert job.peer_bytes == {"p1": 400, "p2": 600}
    assert "dropped p1: sent a bad chunk" in job.reason


def test_no_reachable_peer_means_the_controller_sends_it() -> None:
    fleet = _fleet()
    fleet.away |= {"p1", "p2"}
    job = _stage(fleet, VIA_PEERS)
    assert job.step is Step.STAGED and job.bytes_sent == 1000 and job.bytes_from_peers == 0
    assert "the controller sent the rest" in job.reason and "p1: cannot connect" in job.reason


def test_a_fetch_that_stops_part_way_is_finished_by_the_controller_after_the_prefix() -> None:
    fleet = _fleet(p1={"blobs": set(), "partial": {NEW.sha256: 300}})
    fleet.away.add("p2")
    job = _stage(fleet, VIA_PEERS)
    assert job.step is Step.STAGED
    assert job.peer_bytes == {"p1": 300} and job.bytes_sent == 700  # not from zero


def test_the_seed_is_sent_its_copy_front_to_back_for_the_peers_reading_behind_it() -> None:
    fleet = _fleet()
    _stage(fleet, Route(serves_peers=True, note="the seed of site shop"))
    d1 = fleet.devices["d1"]
    assert d1.sequential == [True] and "fetch_from_peers" not in d1.calls
    fleet2 = _fleet()
    _stage(fleet2, Route())
    assert fleet2.devices["d1"].sequential == [False]


def test_bytes_that_arrive_corrupt_from_peers_are_sent_again_by_the_controller() -> None:
    fleet = _fleet()
    d1 = fleet.devices["d1"]
    d1.fail["stage"] = [refused_checksum()]
    job = _stage(fleet, VIA_PEERS)
    assert job.step is Step.STAGED
    assert d1.calls.count("fetch_from_peers") == 1 and d1.calls.count("upload") == 1
    assert job.bytes_from_peers == 1000 and job.bytes_sent == 1000


def refused_checksum() -> Exception:
    from agent.contract import ErrorKind

    return refused(ErrorKind.CHECKSUM_MISMATCH, "hashes to something else")


def test_a_device_that_goes_away_while_fetching_is_pending() -> None:
    fleet = _fleet()
    fleet.devices["d1"].fail["fetch_from_peers"] = [Unreachable("d1: agent not reachable")]
    job = _stage(fleet, VIA_PEERS)
    assert job.step is Step.PENDING and "unreachable" in job.reason


def test_a_device_that_holds_the_blob_fetches_nothing() -> None:
    fleet = _fleet()
    fleet.devices["d1"].blobs.add(NEW.sha256)
    job = _stage(fleet, VIA_PEERS)
    assert job.step is Step.STAGED and "fetch_from_peers" not in fleet.devices["d1"].calls


# -- the runner's site routes ---------------------------------------------------------------
def _routes(jobs: list[DeviceJob], **kw: object) -> tuple[SiteRoutes, list[str]]:
    hashed: list[str] = []

    def chunks(art: Artifact) -> ChunkList:
        hashed.append(art.sha256)
        return CHUNKS

    endpoints = {j.device: PeerEndpoint(j.device, f"{j.device}:1") for j in jobs}
    return SiteRoutes(jobs, endpoints, chunks, **kw), hashed  # type: ignore[arg-type]


def test_routes_follow_the_site_plan_as_devices_start_and_hold() -> None:
    jobs = [_job("a", 0), _job("b", 1), _job("c", 2), _job("x", 3, site="")]
    routes, hashed = _routes(jobs)
    seed = routes.route(jobs[0])
    assert not seed.peers and seed.serves_peers and "seed of site shop" in seed.note
    assert not routes.route(jobs[1]).peers  # the seed has not started: nothing to read yet
    routes.started("a")
    assert [p.name for p in routes.route(jobs[2]).peers] == ["a"]  # b has not started
    routes.started("b")
    assert [p.name for p in routes.route(jobs[2]).peers] == ["b", "a"]
    routes.finished("a")
    routes.finished("b")
    jobs[1].step = Step.STAGED  # b holds it now: a root of its own
    assert [p.name for p in routes.route(jobs[2]).peers] == ["b"]
    assert routes.route(jobs[3]) == Route()  # in no site
    assert hashed == [NEW.sha256]  # the chunk list is computed once


def test_routes_with_peers_off_alone_or_without_a_certificate_go_direct() -> None:
    jobs = [_job("a", 0), _job("b", 1)]
    off, _ = _routes(jobs, enabled=False)
    assert off.route(jobs[1]) == Route(note="peers off (--no-peers)")
    alone, _ = _routes([jobs[0]])
    assert "only device of site shop" in alone.route(jobs[0]).note
    routes = SiteRoutes(jobs, {"a": PeerEndpoint("a", "a:1")}, lambda art: CHUNKS)
    assert "no peer certificate" in routes.route(jobs[1]).note


def _run_site(devices: list[FakeDevice], policy: Policy) -> list[DeviceJob]:
    """A rollout of one site's devices, driven by the runner with its site routes."""
    fleet = FakeFleet(devices)
    jobs = [_job(d.name, i) for i, d in enumerate(devices)]
    log = MemoryRolloutLog()
    rollout = Rollout("r1", "m", "running", {}, [len(jobs)])
    log.create(rollout, jobs)
    routes, _ = _routes(jobs)
    Runner(log, fleet.connect, rollout, jobs, policy, sleep=lambda s: None,
           routes=routes).run()
    return jobs


def test_a_rollout_of_a_site_sends_one_copy_and_the_rest_travels_between_peers() -> None:
    devices = [FakeDevice(n) for n in ("a", "b", "c", "d")]
    jobs = _run_site(devices, Policy(canary=0, max_failures="0", stage_only=True,
                                     concurrency=1))
    assert [j.step for j in jobs] == [Step.STAGED] * 4
    assert sum(d.sent for d in devices) == NEW.size_bytes  # one copy from the controller
    # one at a time: a device starts when the ones before hold it, so it reads from the
    # first holder (each holder is a root with --peer-fanout children)
    assert [j.peer_bytes for j in jobs] == [{}, {"a": 1000}, {"a": 1000}, {"a": 1000}]


def test_a_device_halted_by_the_failure_budget_receives_nothing_from_peers() -> None:
    devices = [FakeDevice(n) for n in ("a", "b", "c")]
    devices[0].fail["load"] = [refused_model()]
    jobs = _run_site(devices, Policy(canary=1, max_failures="1", concurrency=4))
    assert jobs[0].step is Step.FAILED and jobs[0].model_failed
    assert [j.step for j in jobs[1:]] == [Step.HALTED, Step.HALTED]
    for device in devices[1:]:
        assert device.calls == [] and not device.partial and not device.blobs


def refused_model() -> Exception:
    from agent.contract import ErrorKind

    return refused(ErrorKind.NOT_FOR_THIS_MACHINE, "cannot run it")


def test_a_device_that_held_the_blob_when_planned_seeds_its_site_before_its_turn() -> None:
    jobs = [_job("a", 0), _job("b", 1), _job("c", 2)]
    jobs[2].held = True
    routes, _ = _routes(jobs)
    first = routes.route(jobs[0])  # nothing crosses the uplink: c is the site's root
    assert [p.name for p in first.peers] == ["c"] and not first.serves_peers
    routes.started("a")
    assert [p.name for p in routes.route(jobs[1]).peers] == ["a", "c"]


def test_an_agent_that_cannot_share_blobs_gets_its_copy_from_us_and_serves_no_peer() -> None:
    from agent.contract import AGENT_CAPABILITIES, Capability
    from controller.core.compat import AgentVersion

    devices = [FakeDevice(n) for n in ("a", "b", "c")]
    devices[0].agent = AgentVersion("0.2.0", 2, frozenset(
        c.value for c in AGENT_CAPABILITIES if c is not Capability.PEER_TRANSFER), 0.0)
    fleet = FakeFleet(devices)
    jobs = [_job(d.name, i) for i, d in enumerate(devices)]
    log = MemoryRolloutLog()
    rollout = Rollout("r1", "m", "running", {}, [len(jobs)])
    log.create(rollout, jobs)
    routes, _ = _routes(jobs)
    Runner(log, fleet.connect, rollout, jobs, Policy(canary=0, max_failures="0",
           stage_only=True, concurrency=1), sleep=lambda s: None, routes=routes).run()
    assert [j.step for j in jobs] == [Step.STAGED] * 3
    assert "fetch_from_peers" not in devices[0].calls and devices[0].sequential == [False]
    assert "cannot share blobs" in routes.route(jobs[0]).note
    assert "fleet device upgrade a" in routes.route(jobs[0]).note
    # b became its site's seed; c read from b, never from a
    assert devices[0].sent == devices[1].sent == NEW.size_bytes and devices[2].sent == 0
    assert jobs[2].peer_bytes == {"b": 1000}


def test_a_device_removed_during_the_rollout_is_no_source_any_more() -> None:
    """`fleet device remove` revokes a device's certificates: from then on no device of its
    site is sent to read from it (the plan is made again without it)."""
    jobs = [_job("a", 0), _job("b", 1), _job("c", 2)]
    fleet = {"a", "b", "c"}
    routes, _ = _routes(jobs, present=lambda names: [n for n in names if n in fleet])
    routes.started("a")
    routes.started("b")
    assert [p.name for p in routes.route(jobs[2]).peers] == ["b", "a"]
    fleet.discard("b")
    assert [p.name for p in routes.route(jobs[2]).peers] == ["a"]
    fleet.discard("a")
    alone = routes.route(jobs[2])
    assert not alone.peers and "only device of site shop" in alone.note


def test_a_device_that_held_the_file_when_planned_is_a_source_at_once() -> None:
    """A copy staged ahead (a model's, or a LoRA adapter's with --stage-only) makes its device
    a root of the site's plan before it has done anything in this rollout: the others read
    from it and the controller sends nothing."""
    jobs = [_job("a", 0), _job("b", 1), _job("c", 2)]
    jobs[1].held = True
    routes, _ = _routes(jobs)
    assert [p.name for p in routes.route(jobs[0]).peers] == ["b"]
    assert [p.name for p in routes.route(jobs[2]).peers] == ["b"]
