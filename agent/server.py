"""gRPC server factory: the agent service plus the standard grpc.health.v1 service."""

from __future__ import annotations

import logging
from concurrent import futures
from dataclasses import dataclass, replace
from pathlib import Path

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from agent import bandwidth, failpoints
from agent.core import AgentCore
from agent.emulation import MIB, emulated_view, host_view
from agent.probe import probe_host
from agent.profile_files import find_profile_file, read_toml
from agent.rpc import agent_pb2_grpc as pb_grpc
from agent.rpc import grpc_service_pb2_grpc as oip_grpc
from agent.service import AgentServicer

log = logging.getLogger("edgefleet.agent")

SERVICE_NAME = "edgefleet.agent.v1.AgentService"
MODEL_HEALTH = "edgefleet.agent.v1.Model"  # SERVING while a model is loaded


class ConfigError(Exception):
    pass


@dataclass
class RunningAgent:
    server: grpc.Server
    port: int
    core: AgentCore
    health: health.HealthServicer

    def stop(self, grace: float = 2.0) -> None:
        self.health.enter_graceful_shutdown()
        self.server.stop(grace).wait()
        self.core.shutdown()


def create_server(
    listen: str, data_dir: Path, emulate: str = "", reserve_mib: int = 256,
    restore: bool = True, max_threads: int = 0,
) -> RunningAgent:
    """Build and start the agent. ``listen`` may use port 0; the bound port is returned."""
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
        health_servicer.set(MODEL_HEALTH, status)

    core = AgentCore(data_dir, view, host, on_model_change=on_model_change)
    core.bandwidth = measured
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=16))
    pb_grpc.add_AgentServiceServicer_to_server(AgentServicer(core), server)
    try:
        from agent.oip import InferenceServicer

        oip_grpc.add_GRPCInferenceServiceServicer_to_server(InferenceServicer(core), server)
    except ImportError:  # no numpy: no runtime extra installed
        log.warning("numpy is missing: the Open Inference Protocol is not served")
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    port = server.add_insecure_port(listen)
    if port == 0:
        raise ConfigError(f"cannot listen on {listen}")
    on_model_change(False)
    if restore:
        core.restore()
    failpoints.arm()
    server.start()
    for name in ("", SERVICE_NAME, "inference.GRPCInferenceService"):
        health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    log.info("agent listening on port %d (emulated=%s)", port, view.emulated)
    return RunningAgent(server=server, port=port, core=core, health=health_servicer)
