"""gRPC server factory: the agent service plus the standard grpc.health.v1 service."""

from __future__ import annotations

import logging
from concurrent import futures
from dataclasses import dataclass, replace
from pathlib import Path

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from agent import bandwidth, failpoints
from agent.contract import MODEL_HEALTH_SERVICE
from agent.core import AgentCore
from agent.emulation import MIB, emulated_view, host_view
from agent.local_address import ListenError, is_local
from agent.openai_http.listener import OpenAIListener
from agent.peer_serve import PeerGuard
from agent.peer_transfer import add_peer_services
from agent.probe import probe_host
from agent.profile_files import find_profile_file, read_toml
from agent.rpc import agent_pb2_grpc as pb_grpc
from agent.rpc import grpc_service_pb2_grpc as oip_grpc
from agent.runtimes.base import DEFAULT_STREAM_INTERVAL_S
from agent.security import TrustMaterial
from agent.service import AgentServicer, InferenceOnlyServicer

log = logging.getLogger("edgefleet.agent")

SERVICE_NAME = "edgefleet.agent.v1.AgentService"


# The controller pings every 10 s while a call is open (a LoadModel of a large model sends no
# data for minutes): allow it, or gRPC's default policy would end the call as "too many pings".
# Those pings are how a link cut mid-call is noticed instead of waiting out the deadline.
KEEPALIVE_POLICY = [("grpc.http2.min_recv_ping_interval_without_data_ms", 5000),
                    ("grpc.http2.max_ping_strikes", 0),
                    ("grpc.keepalive_permit_without_calls", 1)]


class ConfigError(Exception):
    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.hint = hint


@dataclass
class RunningAgent:
    server: grpc.Server
    port: int
    core: AgentCore
    health: health.HealthServicer
    inference_server: grpc.Server | None = None
    openai: OpenAIListener | None = None

    def stop(self, grace: float = 2.0) -> None:
        self.health.enter_graceful_shutdown()
        if self.openai is not None:
            self.openai.stop()
        for server in (self.inference_server, self.server):
            if server is not None:
                server.stop(grace).wait()
        self.core.shutdown()


def _add_inference(server: grpc.Server, core: AgentCore) -> None:
    try:
        from agent.oip import InferenceServicer

        oip_grpc.add_GRPCInferenceServiceServicer_to_server(InferenceServicer(core), server)
    except ImportError:  # no numpy: no runtime extra installed
        log.warning("numpy is missing: the Open Inference Protocol is not served")


def create_server(
    listen: str, data_dir: Path, emulate: str = "", reserve_mib: int = 256,
    restore: bool = True, max_threads: int = 0, inference_listen: str = "",
    tls_dir: Path | None = None, openai_listen: str = "",
    stream_interval_s: float = DEFAULT_STREAM_INTERVAL_S,
) -> RunningAgent:
    """Build and start the agent. ``listen`` may use port 0; the bound port is returned.

    ``inference_listen`` (gRPC) and ``openai_listen`` (HTTP, docs/serving.md) are the local,
    certificate-free listeners for apps on the device: loopback or unix sockets only.
    ``stream_interval_s``: streamed text is coalesced within this interval (agent.workers).
    """
    if not 0.0 <= stream_interval_s <= 1.0:
        raise ConfigError(f"stream interval {stream_interval_s * 1000:g} ms is out of range",
                          hint="use 0 (every token alone) to 1000 ms; default "
                          f"{DEFAULT_STREAM_INTERVAL_S * 1000:g}")
    host = probe_host()
    data_dir.mkdir(parents=True, exist_ok=True)
    measured = bandwidth.cached(data_dir)
    if emulate:
        path = find_profile_file(emulate)
        if path is None:
            raise ConfigError(f"no profile named {emulate!r}")
        view = emulated_view(host, read_toml(path))
    else:
        view = host_view(host, reserve_mib * MIB, measured.gbps)
    if max_threads > 0:
        view = replace(view, cores=max(1, min(view.cores, max_threads)))
    health_servicer = health.HealthServicer(experimental_non_blocking=True)

    def on_model_change(ready: bool) -> None:
        status = health_pb2.HealthCheckResponse.SERVING if ready else (
            health_pb2.HealthCheckResponse.NOT_SERVING)
        health_servicer.set(MODEL_HEALTH_SERVICE, status)  # SERVING while a model is loaded

    core = AgentCore(data_dir, view, host, on_model_change=on_model_change)
    core.bandwidth = measured
    # PeerGuard: a fleet peer's certificate may read blobs (docs/delivery.md), nothing else
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=16), options=KEEPALIVE_POLICY,
                         interceptors=[PeerGuard()])
    pb_grpc.add_AgentServiceServicer_to_server(AgentServicer(core, stream_interval_s), server)
    _add_inference(server, core)
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    trust = TrustMaterial.load(tls_dir) if tls_dir else None
    if trust is not None:
        core.signing_pub = trust.signing_pub
        if tls_dir is not None:
            add_peer_services(server, core.store, tls_dir)
        port = server.add_secure_port(listen, trust.server_credentials())
    else:
        if not is_local(listen):
            log.warning("serving model management WITHOUT TLS on %s; enroll the device "
                        "(fleet device enroll) to require the fleet's client certificate",
                        listen)
        port = server.add_insecure_port(listen)
    if port == 0:
        raise ConfigError(f"cannot listen on {listen}")
    inference_server = None
    if inference_listen:
        # Apps on the device: loopback or a Unix socket, inference only, no certificates.
        if not is_local(inference_listen):
            raise ConfigError(f"--inference-listen {inference_listen} is not local; use "
                              "unix:///PATH or 127.0.0.1:PORT")
        inference_server = grpc.server(futures.ThreadPoolExecutor(max_workers=16))
        pb_grpc.add_AgentServiceServicer_to_server(
            InferenceOnlyServicer(core, stream_interval_s), inference_server)
        _add_inference(inference_server, core)
        health_pb2_grpc.add_HealthServicer_to_server(health_servicer, inference_server)
        if inference_server.add_insecure_port(inference_listen) == 0:
            raise ConfigError(f"cannot listen on {inference_listen}")
    openai = None
    if openai_listen:
        if openai_listen in (listen, inference_listen):
            raise ConfigError(f"--openai-listen {openai_listen} is already a gRPC listener",
                              hint="give the OpenAI endpoint its own port or socket")
        try:
            openai = OpenAIListener(core, openai_listen, stream_interval_s)
        except ListenError as exc:
            raise ConfigError(str(exc), hint="--openai-listen takes unix:///PATH or "
                              "127.0.0.1:PORT (loopback only)") from None
    on_model_change(False)
    if restore:
        core.restore()
    failpoints.arm()
    server.start()
    if inference_server is not None:
        inference_server.start()
    if openai is not None:
        try:
            openai.start()
        except ListenError as exc:
            server.stop(0)
            if inference_server is not None:
                inference_server.stop(0)
            core.shutdown()
            raise ConfigError(str(exc)) from None
    for name in ("", SERVICE_NAME, "inference.GRPCInferenceService"):
        health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    log.info("agent listening on port %d (emulated=%s)", port, view.emulated)
    return RunningAgent(server=server, port=port, core=core, health=health_servicer,
                        inference_server=inference_server, openai=openai)
