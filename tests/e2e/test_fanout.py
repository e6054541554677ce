"""One copy per site, against real lab agents (sshd + agents on loopback, mutual TLS): the
controller sends a site one copy and its devices read it from each other in a chain; a peer
killed mid-chain, a peer serving a corrupted byte and a controller killed mid-fetch; who may
read what. After each, every device holds the verified blob or says why not, and nothing
unverified is activated. (A device that cannot reach its peers: tests/faults/test_peers.py.)
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import grpc
import pytest

from agent.contract import sha256_file
from agent.peer_contract import peer_common_name
from agent.rpc import agent_pb2 as apb
from agent.rpc import agent_pb2_grpc as apb_grpc
from agent.rpc import peer_pb2 as pb
from agent.rpc import peer_pb2_grpc as pb_grpc
from controller.adapters.device_link import peer_grant
from controller.adapters.rollout_repo import SqlRolloutLog
from controller.chunk_index import chunk_list
from controller.lab import _stop_agent, read_registry
from controller.services.context import Fleet
from controller.services.lab_fleet import lab_restart
from controller.services.models import ensure_model
from controller.services.ports import Artifact, PeerEndpoint, PeerOrder
from tests.conftest import Cli, Result

MIB = 1024 * 1024
PROFILE = "lab-orin-nano-8gb"  # q8_0, 38.8 MiB
FLEET = str(Path(sys.executable).parent / "fleet")


@pytest.fixture
def site(cli: Cli, lab: Callable[..., Result]) -> Callable[[int], None]:
    """A loopback lab of N devices labelled site=shop."""

    def up(n: int) -> None:
        lab("--devices", str(n), "--profiles", PROFILE)
        for i in range(1, n + 1):
            assert cli("device", "label", f"lab-{i}", "site=shop").code == 0

    return up


def _q8() -> tuple[str, int, Path]:
    fleet = Fleet.open()
    spec = ensure_model(fleet, "tiny-llama")
    variant = spec.variant("q8_0")
    assert variant is not None
    art = fleet.artifacts.local(spec, variant)
    assert art is not None
    return art.sha256, art.size_bytes, art.path


def _deploy(cli: Cli, *args: str) -> tuple[Result, dict[str, dict[str, object]]]:
    result = cli("deploy", "tiny-llama", "--group", "lab", *args, "--json")
    try:
        return result, {o["device"]: o for o in json.loads(result.out)["outcomes"]}
    except (ValueError, KeyError):
        return result, {}


def _store(home: Path, name: str) -> Path:
    device = next(d for d in read_registry(home / "lab") if d.name == name)
    return Path(device.data_dir) / "store"


def _holds_verified(home: Path, name: str, sha: str) -> bool:
    blob = _store(home, name) / "blobs" / sha
    return blob.is_file() and sha256_file(blob) == sha


def _wait(check: Callable[[], bool], what: str, timeout_s: float = 120.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def test_a_site_gets_one_copy_and_its_devices_chain_it_on(cli: Cli, home: Path,
                                                          site: Callable[[int], None]) -> None:
    site(3)
    sha, size, _ = _q8()
    result, outcomes = _deploy(cli, "--stage-only", "--concurrency", "3")
    assert result.code == 0, result.err
    assert [outcomes[f"lab-{i}"]["status"] for i in (1, 2, 3)] == ["staged"] * 3
    assert outcomes["lab-1"]["bytes_sent"] == size and outcomes["lab-1"]["peer_bytes"] == {}
    assert outcomes["lab-2"]["bytes_sent"] == 0 and outcomes["lab-2"]["peer_bytes"] == {
        "lab-1": size}
    assert outcomes["lab-3"]["bytes_sent"] == 0 and outcomes["lab-3"]["peer_bytes"] == {
        "lab-2": size}
    assert {o["site"] for o in outcomes.values()} == {"shop"}
    for i in (1, 2, 3):
        assert _holds_verified(home, f"lab-{i}", sha)
    # the rollout log says where each device got its bytes
    fleet = Fleet.open()
    rows = {r.device: r for r in SqlRolloutLog(fleet.inventory).devices(
        json.loads(result.out)["rollout"])}
    assert rows["lab-3"].site == "shop" and rows["lab-3"].bytes_from_peers == size
    assert json.loads(rows["lab-3"].peer_bytes_json) == {"lab-2": size}
    shown = cli("rollouts", "show", json.loads(result.out)["rollout"])
    assert shown.code == 0 and "from lab-2" in shown.out
    # the pre-seeded site switches with nothing sent
    result, outcomes = _deploy(cli, "--canary", "0")
    assert result.code == 0, result.err
    assert {o["status"] for o in outcomes.values()} == {"committed"}
    assert sum(int(o["bytes_sent"]) + int(o["bytes_from_peers"])  # type: ignore[call-overload]
               for o in outcomes.values()) == 0


def test_without_peers_or_a_site_every_device_gets_its_own_copy(
        cli: Cli, home: Path, lab: Callable[..., Result]) -> None:
    lab("--devices", "2", "--profiles", PROFILE)  # no site label
    _, size, _ = _q8()
    result, outcomes = _deploy(cli, "--stage-only")
    assert result.code == 0, result.err
    assert [o["bytes_sent"] for o in outcomes.values()] == [size, size]
    assert all(o["site"] == "" for o in outcomes.values())
    for name in ("lab-1", "lab-2"):
        for part in (_store(home, name) / "blobs").iterdir():
            part.unlink()
        assert cli("device", "label", name, "site=shop").code == 0
    result, outcomes = _deploy(cli, "--stage-only", "--no-peers")
    assert result.code == 0, result.err
    assert [o["bytes_sent"] for o in outcomes.values()] == [size, size]
    assert "peers off (--no-peers)" in cli("rollouts", "show", json.loads(result.out)[
        "rollout"], "--events").out


def test_a_peer_killed_mid_chain_its_downstream_resumes_from_the_next_one_up(
        cli: Cli, home: Path, site: Callable[[int], None]) -> None:
    site(4)
    sha, size, _ = _q8()
    registry = {d.name: d for d in read_registry(home / "lab")}
    lab3_part = _store(home, "lab-3") / "incoming" / f"{sha}.part"
    killed = threading.Event()

    def kill_lab2() -> None:  # when lab-3, reading from lab-2, has a fifth of the file
        try:
            _wait(lambda: _size(lab3_part) >= size // 5, "lab-3 to receive from lab-2")
        except AssertionError:
            return
        _stop_agent(registry["lab-2"], kill=True)
        killed.set()

    killer = threading.Thread(target=kill_lab2)
    killer.start()
    # the seed's copy paced at 3 MB/s: ~13 s in which the chain runs behind it
    result, outcomes = _deploy(cli, "--stage-only", "--concurrency", "4", "--bwlimit", "3")
    killer.join()
    assert killed.is_set()
    assert result.code != 0 and outcomes["lab-2"]["status"] == "pending", outcomes
    assert "unreachable" in str(outcomes["lab-2"]["reason"])
    for name in ("lab-1", "lab-3", "lab-4"):
        assert outcomes[name]["status"] == "staged" and _holds_verified(home, name, sha)
    lab3 = outcomes["lab-3"]
    assert lab3["bytes_sent"] == 0  # never the controller: lab-1 took over from lab-2
    assert set(lab3["peer_bytes"]) == {"lab-2", "lab-1"}  # type: ignore[arg-type]
    assert sum(lab3["peer_bytes"].values()) == size  # type: ignore[union-attr]
    assert outcomes["lab-4"]["peer_bytes"] == {"lab-3": size}  # its chain went on
    # lab-2 comes back: the resume takes it on from its own partial copy, from its peers
    partial = _size(_store(home, "lab-2") / "incoming" / f"{sha}.part")
    assert partial > 0
    lab_restart(Fleet.open(), ["lab-2"])
    resumed = cli("rollouts", "resume", json.loads(result.out)["rollout"], "--json")
    assert resumed.code == 0, resumed.err
    lab2 = {o["device"]: o for o in json.loads(resumed.out)["outcomes"]}["lab-2"]
    assert lab2["status"] == "staged" and lab2["bytes_sent"] == 0
    assert "already on the device" in lab2["reason"]
    assert 0 < sum(lab2["peer_bytes"].values()) <= size - partial + 4 * MIB  # not from zero
    assert _holds_verified(home, "lab-2", sha)


def test_a_peer_serving_a_corrupted_byte_is_dropped_and_nothing_bad_is_activated(
        cli: Cli, home: Path, site: Callable[[int], None],
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLEET_AGENT_PEER_CORRUPT", "lab-2:2")  # lab-2 flips a byte of chunk 2
    site(3)
    sha, size, _ = _q8()
    result, outcomes = _deploy(cli, "--canary", "0", "--concurrency", "3")
    assert result.code == 0, result.err
    assert {o["status"] for o in outcomes.values()} == {"committed"}
    lab3 = outcomes["lab-3"]
    assert lab3["peer_bytes"] == {"lab-2": 2 * MIB, "lab-1": size - 2 * MIB}  # 1 MiB chunks
    events = cli("rollouts", "show", json.loads(result.out)["rollout"], "--events").out
    assert "dropped lab-2: sent a bad chunk 2" in " ".join(events.split())
    fleet = Fleet.open()
    for i in (1, 2, 3):
        assert _holds_verified(home, f"lab-{i}", sha)
        with fleet.client(fleet.inventory.get_device(f"lab-{i}")) as client:
            assert client.get_store().active_sha256 == sha


def test_when_every_peer_sends_a_bad_byte_the_controller_sends_the_rest_after_the_prefix(
        cli: Cli, home: Path, site: Callable[[int], None],
        monkeypatch: pytest.MonkeyPatch) -> None:
    # lab-1 spoils chunk 5 for its readers, lab-2 chunk 2 for its own
    monkeypatch.setenv("FLEET_AGENT_PEER_CORRUPT", "lab-1:5,lab-2:2")
    site(3)
    sha, size, _ = _q8()
    result, outcomes = _deploy(cli, "--stage-only", "--concurrency", "3")
    assert result.code == 0, result.err
    assert {o["status"] for o in outcomes.values()} == {"staged"}
    assert outcomes["lab-1"]["bytes_sent"] == size
    # lab-2: chunks 0-4 from lab-1, which it then drops; the controller sends the rest
    assert outcomes["lab-2"]["peer_bytes"] == {"lab-1": 5 * MIB}
    assert outcomes["lab-2"]["bytes_sent"] == size - 5 * MIB
    # lab-3: chunks 0-1 from lab-2, 2-4 from lab-1, the rest from the controller
    assert outcomes["lab-3"]["peer_bytes"] == {"lab-2": 2 * MIB, "lab-1": 3 * MIB}
    assert outcomes["lab-3"]["bytes_sent"] == size - 5 * MIB
    assert "every peer was dropped" in str(outcomes["lab-3"]["reason"])
    for i in (1, 2, 3):
        assert _holds_verified(home, f"lab-{i}", sha)


def test_a_controller_killed_mid_fetch_resumes_from_what_the_devices_hold(
        cli: Cli, home: Path, site: Callable[[int], None],
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLEET_ROLLOUT_HEARTBEAT_S", "0.2")
    site(3)
    sha, size, _ = _q8()
    env = dict(os.environ, FLEET_HOME=str(home), FLEET_FAILPOINTS="fetch.half")
    killed = subprocess.run([FLEET, "deploy", "tiny-llama", "--group", "lab", "--stage-only",
                             "--concurrency", "3", "--bwlimit", "4", "--json"], env=env,
                            capture_output=True, text=True, timeout=300)
    assert killed.returncode == -9, killed.stderr
    time.sleep(1.5)  # its heartbeat goes stale
    held = {f"lab-{i}": _size(_store(home, f"lab-{i}") / "incoming" / f"{sha}.part")
            for i in (1, 2, 3)}
    assert any(held.values())
    rollout = json.loads(cli("rollouts", "--json").out)["rollouts"][0]["rollout"]
    resumed = cli("rollouts", "resume", rollout, "--json")
    assert resumed.code == 0, resumed.err
    outcomes = {o["device"]: o for o in json.loads(resumed.out)["outcomes"]}
    assert {o["status"] for o in outcomes.values()} == {"staged"}
    assert outcomes["lab-1"]["bytes_sent"] < size  # the seed's upload resumed, not restarted
    for name in ("lab-2", "lab-3"):
        assert outcomes[name]["bytes_sent"] == 0, outcomes[name]
    for i in (1, 2, 3):
        assert _holds_verified(home, f"lab-{i}", sha)


def _peer_channel(fleet: Fleet, as_device: str, target: str) -> grpc.Channel:
    peer = fleet.pki.issue(peer_common_name(as_device), client=True)
    creds = grpc.ssl_channel_credentials(fleet.pki.ca_cert_path.read_bytes(), peer.key_pem,
                                         peer.cert_pem)
    device = fleet.inventory.get_device(target)
    return grpc.secure_channel(f"{device.host}:{device.agent_port}", creds,
                               options=[("grpc.ssl_target_name_override", target)])


def _read(channel: grpc.Channel, grant: pb.PeerGrant) -> grpc.StatusCode:
    try:
        for _ in pb_grpc.PeerStub(channel).ReadBlob(pb.ReadBlobRequest(grant=grant),
                                                    timeout=10):
            pass
    except grpc.RpcError as exc:
        return exc.code()  # type: ignore[no-any-return]
    return grpc.StatusCode.OK


def test_who_may_read_what(cli: Cli, home: Path, site: Callable[[int], None]) -> None:
    site(3)
    sha, size, path = _q8()
    result, _ = _deploy(cli, "--stage-only", "--device", "lab-1", "--no-peers")
    assert result.code == 0, result.err
    fleet = Fleet.open()
    art = Artifact("tiny-llama", "q8_0", "gguf", sha, size, str(path))
    chunks = chunk_list(path, sha, size)

    def grant(receiver: str, sources: tuple[str, ...], sign: object = None) -> pb.PeerGrant:
        order = PeerOrder(art, chunks, receiver, tuple(PeerEndpoint(s, "x:1") for s in sources),
                          "r")
        return peer_grant(order, sign or fleet.pki.sign_manifest)  # type: ignore[arg-type]

    with _peer_channel(fleet, "lab-2", "lab-1") as channel:
        assert _read(channel, grant("lab-2", ("lab-1",))) == grpc.StatusCode.OK
        # a grant for another receiver, one that does not name lab-1, a forged one
        assert _read(channel, grant("lab-3", ("lab-1",))) == grpc.StatusCode.PERMISSION_DENIED
        assert _read(channel, grant("lab-2", ("lab-3",))) == grpc.StatusCode.PERMISSION_DENIED
        from controller.adapters.pki import FleetPki

        other = FleetPki(home / "other-pki").ensure()
        assert _read(channel, grant("lab-2", ("lab-1",), other.sign_manifest)) == (
            grpc.StatusCode.PERMISSION_DENIED)
        # a blob lab-1 neither holds nor receives
        unknown = grant("lab-2", ("lab-1",))
        body = json.loads(unknown.instruction)
        body["sha256"] = "0" * 64
        forged, signature = fleet.pki.sign_manifest(body)
        assert _read(channel, pb.PeerGrant(instruction=forged, signature=signature,
                                           chunk_sha256=unknown.chunk_sha256)) == (
            grpc.StatusCode.NOT_FOUND)
        # a peer certificate manages nothing
        for call in (lambda s: s.GetStore(apb.GetStoreRequest(), timeout=5),
                     lambda s: s.CommitModel(apb.CommitModelRequest(sha256=sha), timeout=5)):
            with pytest.raises(grpc.RpcError) as refused:
                call(apb_grpc.AgentServiceStub(channel))
            assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
        with pytest.raises(grpc.RpcError) as refused:
            for _ in pb_grpc.TransferStub(channel).FetchBlob(pb.FetchBlobRequest(), timeout=5):
                pass
        assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
    # the controller's own certificate is not a peer's: it reads no blob
    with fleet.client(fleet.inventory.get_device("lab-1")) as client:
        with pytest.raises(grpc.RpcError) as refused:
            for _ in pb_grpc.PeerStub(client._channel).ReadBlob(  # noqa: SLF001
                    pb.ReadBlobRequest(grant=grant("lab-2", ("lab-1",))), timeout=5):
                pass
        assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
