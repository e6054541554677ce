"""Mutual TLS on the management API and signed manifests, against real lab agents."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import grpc
import pytest

from agent.contract import sha256_file
from agent.rpc import agent_pb2 as pb
from agent.rpc import agent_pb2_grpc as pb_grpc
from controller.adapters.agent_client import GrpcAgentClient
from controller.adapters.pki import FleetPki
from controller.errors import AgentRefused, Unreachable
from controller.services.context import Fleet
from controller.services.manifests import manifest_signer
from tests.conftest import Cli, Result


@pytest.fixture
def two(lab: Callable[..., Result]) -> Fleet:
    lab("--devices", "2", "--profiles", "lab-n100-16gb")
    return Fleet.open()


def _call_profile(channel: grpc.Channel) -> None:
    pb_grpc.AgentServiceStub(channel).GetProfile(pb.GetProfileRequest(), timeout=5)


def test_unauthenticated_clients_are_refused(two: Fleet) -> None:
    device = two.inventory.get_device("lab-1")
    address = f"{device.host}:{device.agent_port}"
    with grpc.insecure_channel(address) as channel, pytest.raises(grpc.RpcError):
        _call_profile(channel)
    ca = two.pki.ca_cert_path.read_bytes()
    no_cert = grpc.ssl_channel_credentials(root_certificates=ca)
    options = [("grpc.ssl_target_name_override", "lab-1")]
    with grpc.secure_channel(address, no_cert, options=options) as channel, pytest.raises(
            grpc.RpcError):
        _call_profile(channel)


def test_a_client_of_another_ca_is_refused(two: Fleet, tmp_path: Path) -> None:
    other = FleetPki(tmp_path / "other-pki").ensure()
    device = two.inventory.get_device("lab-1")
    foreign = (two.pki.ca_cert_path.read_bytes(), other.client_key_path.read_bytes(),
               other.client_cert_path.read_bytes())
    with GrpcAgentClient("lab-1", device.host, device.agent_port, tls=foreign) as client, \
            pytest.raises(Unreachable):
        client.get_profile()
    with two.client(device) as client:  # the fleet's own certificate works
        assert client.get_profile().emulated


def test_the_controller_refuses_an_agent_with_another_devices_certificate(two: Fleet) -> None:
    lab1, lab2 = (two.inventory.get_device(n) for n in ("lab-1", "lab-2"))
    # lab-1's record now points at lab-2's agent: its certificate names lab-2, not lab-1
    with GrpcAgentClient("lab-1", lab2.host, lab2.agent_port,
                         tls=two.pki.client_credentials()) as client, \
            pytest.raises(Unreachable) as info:
        client.get_profile()
    assert lab1.tls and "lab-1" in info.value.message


def _request(fleet: Fleet, path: Path, device: str = "lab-1",
             **manifest_changes: object) -> pb.LoadModelRequest:
    sha = sha256_file(path)
    fields = {"sha256": sha, "size_bytes": path.stat().st_size, "name": "tiny-llama",
              "variant": "q2_k", "format": "gguf", "n_ctx": 256, "memory_bytes": 0,
              "trial": False, "trial_seconds": 0, "runtime": {}}
    body, signature = manifest_signer(fleet, device)(fields)
    changed = json.dumps({**json.loads(body), **manifest_changes}, sort_keys=True,
                         separators=(",", ":")).encode()
    return pb.LoadModelRequest(sha256=sha, name="tiny-llama", variant="q2_k", format="gguf",
                               n_ctx=256, size_bytes=path.stat().st_size,
                               manifest=changed if manifest_changes else body,
                               manifest_signature=signature)


def _stage(fleet: Fleet, client: GrpcAgentClient, path: Path) -> Path:
    incoming = Path(client.get_store().incoming_dir)
    target = incoming / sha256_file(path)
    target.write_bytes(path.read_bytes())
    return target


def test_signed_manifests(two: Fleet, model_cache: Path) -> None:
    q2 = model_cache / "tiny-llama" / "tiny-llama-q2_k.gguf"
    device = two.inventory.get_device("lab-1")
    with two.client(device) as client:
        _stage(two, client, q2)
        unsigned = pb.LoadModelRequest(sha256=sha256_file(q2), name="tiny-llama",
                                       variant="q2_k", format="gguf", n_ctx=256,
                                       size_bytes=q2.stat().st_size)
        with pytest.raises(AgentRefused) as info:
            client.load_model(unsigned)
        assert info.value.code == "PERMISSION_DENIED" and "refused (signed)" in (
            info.value.message)
        with pytest.raises(AgentRefused) as info:
            client.load_model(_request(two, q2, variant="f16"))  # tampered manifest
        assert info.value.code == "PERMISSION_DENIED" and "signature is invalid" in (
            info.value.message)
        assert client.list_models() == []
        client.load_model(_request(two, q2))  # genuine: accepted
        assert [m.variant for m in client.list_models() if m.active] == ["q2_k"]


def test_a_tampered_blob_is_refused_and_reported(two: Fleet, model_cache: Path) -> None:
    q4 = model_cache / "tiny-llama" / "tiny-llama-q4_k_m.gguf"
    device = two.inventory.get_device("lab-2")
    with two.client(device) as client:
        staged = _stage(two, client, q4)
        data = bytearray(staged.read_bytes())
        data[4096] ^= 0x01
        staged.write_bytes(bytes(data))
        request = _request(two, q4, device="lab-2")  # a genuine manifest for the real bytes
        with pytest.raises(AgentRefused) as info:
            client.load_model(request)
        assert info.value.code == "DATA_LOSS"
        assert not staged.exists() and client.list_models() == []


def test_deploy_is_signed_and_mutually_authenticated_end_to_end(cli: Cli, two: Fleet) -> None:
    result = cli("deploy", "tiny-llama", "--group", "lab", "--json")
    assert result.code == 0, result.err
    assert {o["status"] for o in json.loads(result.out)["outcomes"]} == {"committed"}
