"""What each listener of a real agent serves, and how much: the certificate-free inference
listener serves its allow-list and denies every other RPC of the descriptor; oversize
prompts and messages are refused before they cost anything; one more call than the limit is
refused at once."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from agent.rpc import agent_pb2 as pb
from agent.rpc import agent_pb2_grpc as pb_grpc
from agent.service import INFERENCE_RPCS
from tests.agent_process import AgentProcess

SERVICE = pb.DESCRIPTOR.services_by_name["AgentService"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def served(tmp_path: Path, model_cache: Path) -> Iterator[tuple[AgentProcess, str]]:
    """An agent with tight limits, a model loaded, and a local inference listener."""
    local = f"127.0.0.1:{_free_port()}"
    agent = AgentProcess(tmp_path / "data", extra=(
        "--inference-listen", local, "--max-prompt-kib", "1",
        "--inference-max-message-mib", "0.5", "--max-concurrent-rpcs", "3")).start()
    try:
        q2 = model_cache / "tiny-llama" / "tiny-llama-q2_k.gguf"
        agent.stage(q2)
        with agent.client() as client:
            client.load_model(agent.load_request(q2, "q2_k"))
        yield agent, local
    finally:
        agent.stop()


def _call(channel: grpc.Channel, method: Any) -> grpc.StatusCode:
    """Call ``method`` of the agent service with an empty request; the status it ends with."""
    from google.protobuf import message_factory

    path = f"/{SERVICE.full_name}/{method.name}"
    request = message_factory.GetMessageClass(method.input_type)()
    response = message_factory.GetMessageClass(method.output_type)
    kind = channel.unary_stream if method.server_streaming else channel.unary_unary
    call = kind(path, request_serializer=lambda m: m.SerializeToString(),
                response_deserializer=response.FromString)
    try:
        result = call(request, timeout=30)
        if method.server_streaming:
            list(result)
    except grpc.RpcError as exc:
        return exc.code()  # type: ignore[no-any-return]
    return grpc.StatusCode.OK


def test_the_inference_listener_denies_every_rpc_but_its_allow_list(
        served: tuple[AgentProcess, str]) -> None:
    agent, local = served
    def state() -> tuple[object, ...]:
        with agent.client() as client:
            s = client.get_store()
            return (s.active_sha256, s.previous_sha256, tuple(s.blobs), s.staged_sha256,
                    [(m.sha256, m.worker_pid) for m in client.list_models()])

    before = state()
    with grpc.insecure_channel(local) as channel:
        codes = {m.name: _call(channel, m) for m in SERVICE.methods}
    denied = {name for name, code in codes.items() if code == grpc.StatusCode.PERMISSION_DENIED}
    assert denied == set(codes) - INFERENCE_RPCS  # every management RPC, now and added later
    assert codes["GetProfile"] == codes["ListModels"] == grpc.StatusCode.OK
    with grpc.insecure_channel(local) as channel:  # health and inference still served there
        health = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(),
                                                           timeout=5)
        assert health.status == health_pb2.HealthCheckResponse.SERVING
    assert state() == before  # UnloadModel, CheckFit(reclaim) ... changed nothing


def test_oversize_prompts_and_messages_are_refused_before_they_cost(
        served: tuple[AgentProcess, str]) -> None:
    agent, local = served
    with agent.client() as client:
        records = client.telemetry().last_seq
    with grpc.insecure_channel(local) as channel:
        generate = channel.unary_stream(f"/{SERVICE.full_name}/Generate",
                                        request_serializer=pb.GenerateRequest.SerializeToString,
                                        response_deserializer=pb.GenerateResponse.FromString)
        with pytest.raises(grpc.RpcError) as info:  # over --max-prompt-kib 1
            list(generate(pb.GenerateRequest(prompt="x" * 2048), timeout=30))
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "the prompt is 2048 bytes" in str(info.value.details())
        with pytest.raises(grpc.RpcError) as info:  # over --inference-max-message-mib 0.5
            list(generate(pb.GenerateRequest(prompt="x" * 600_000), timeout=30))
        assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert len(list(generate(pb.GenerateRequest(prompt="hi", max_tokens=2),
                                 timeout=30))) >= 2  # a normal request still works
    with agent.client() as client:
        # the management listener keeps its own (4 MiB) limit
        with pytest.raises(grpc.RpcError) as info:
            list(client._stub.Generate(pb.GenerateRequest(prompt="x" * (5 << 20)), timeout=30))
        assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        # the refused prompts never reached the tokenizer: only the normal request is recorded
        assert client.telemetry().last_seq == records + 1


def test_one_call_over_the_limit_is_refused_at_once(served: tuple[AgentProcess, str]) -> None:
    agent, _ = served
    request = pb.BenchmarkRequest(runs=100, max_tokens=512)
    with grpc.insecure_channel(f"127.0.0.1:{agent.port}") as channel:
        stub = pb_grpc.AgentServiceStub(channel)
        # three long calls hold the agent's three slots (--max-concurrent-rpcs 3); the agent
        # is stopped after the test, which ends them
        long: list[Any] = []
        refused = None
        for _ in range(100):  # bounded
            long = [c for c in long if not c.done()]  # one refused while another ran: again
            long += [stub.Benchmark.future(request, timeout=300) for _ in range(3 - len(long))]
            time.sleep(0.1)
            if any(c.done() for c in long):
                continue
            try:  # the three are running: one more call is one too many
                stub.GetProfile(pb.GetProfileRequest(), timeout=10)
            except grpc.RpcError as exc:
                refused = exc
                break
        for call in long:
            call.cancel()
    assert refused is not None
    assert refused.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
