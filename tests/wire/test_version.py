"""GetVersion over real gRPC: a current agent says its version, contract, capabilities and
clock; a server without the RPC (every agent before it) reads as version unknown with 0.1.0's
capabilities, which a rollout then refuses by name."""

from __future__ import annotations

import time
from concurrent import futures

import grpc

from agent import __version__
from agent.contract import AGENT_CAPABILITIES, CONTRACT_VERSION, LEGACY_CAPABILITIES
from agent.rpc import agent_pb2_grpc as pb_grpc
from controller.adapters.agent_client import GrpcAgentClient
from controller.adapters.device_link import GrpcDeviceLink
from controller.core import compat
from tests.agent_process import AgentProcess


def _link(client: GrpcAgentClient) -> GrpcDeviceLink:
    return GrpcDeviceLink(client, lambda m: (b"", b""), lambda *a: 0)


def test_a_current_agent_says_what_it_is_and_can_do(agent: AgentProcess) -> None:
    before = time.time()
    agent.start()
    with agent.client() as client:
        seen = _link(client).capabilities()
    assert seen.version == __version__ and seen.contract == CONTRACT_VERSION
    assert seen.capabilities == {c.value for c in AGENT_CAPABILITIES}
    assert seen.clock_skew_s is not None and abs(seen.clock_skew_s) < 5  # same machine
    assert before - 1 <= seen.started_unix <= time.time()
    assert compat.missing(seen, compat.needed(False)) == []


def test_an_agent_without_get_version_reads_as_0_1_0() -> None:
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    # the generated base servicer answers every RPC UNIMPLEMENTED, as an old agent does this one
    pb_grpc.add_AgentServiceServicer_to_server(pb_grpc.AgentServiceServicer(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        with GrpcAgentClient("old-agent", "127.0.0.1", port, 5.0) as client:
            assert client.get_version() is None
            seen = _link(client).capabilities()
    finally:
        server.stop(0).wait()
    assert seen.legacy and seen.version == "" and seen.clock_skew_s is None
    assert seen.capabilities == {c.value for c in LEGACY_CAPABILITIES}
    assert compat.missing(seen, compat.needed(False)) == ["abort-trial", "bound-manifest",
                                                          "error-kinds", "trial-deadline"]
