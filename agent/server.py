"""gRPC server factory: the agent service plus the standard grpc.health.v1 service."""

from __future__ import annotations

import logging
from concurrent import futures
from dataclasses import dataclass, replace
from pathlib import Path

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from agent import bandwidth, failpoints
from agent.client_auth import ClientCertPolicy
from agent.contract import MODEL_HEALTH_SERVICE
from agent.core import AgentCore
from agent.cpu_sets import CpuPlan, available_cpus, cpu_speeds, plan_cpus
from agent.emulation import MIB, DeviceView, emulated_view, host_view
from agent.limits import AgentLimits
from agent.local_address import ListenError, is_local
from agent.manifest_check import ManifestGate
from agent.openai_http.listener import OpenAIListener
from agent.peer_contract import PEER_METHOD_PREFIX
from agent.peer_serve import PeerGuard
from agent.peer_transfer import add_peer_services
from agent.probe import probe_host
from agent.profile_files import find_profile_file, read_toml
from agent.rpc import agent_pb2_grpc as pb_grpc
from agent.rpc import grpc_service_pb2_grpc as oip_grpc
from agent.rpc import peer_pb2
from agent.runtimes.base import DEFAULT_STREAM_INTERVAL_S
from agent.service import AgentServicer, InferenceOnlyServicer
from agent.trust_store import TrustError, TrustStore

log = logging.getLogger("edgefleet.agent")

SERVICE_NAME = "edgefleet.agent.v1.AgentService"


# The controller pings every 10 s while a call is open (a LoadModel of a large model sends no
# data for minutes): allow it, or gRPC's default policy would end the call as "too many pings".
# Those pings are how a link cut mid-call is noticed instead of waiting out the deadline.
KEEPALIVE_POLICY = [("grpc.http2.min_recv_ping_interval_without_data_ms", 5000),
                    ("grpc.http2.max_ping_strikes", 0),
                    ("grpc.keepalive_permit_without_calls", 1)]


# Methods of the mutual-TLS listener a device's certificate may call (agent.client_auth):
# reading a blob it was granted (agent.peer_serve); every other one is the controller's only.
PEER_METHODS: frozenset[str] = frozenset(
    PEER_METHOD_PREFIX + m.name for m in peer_pb2.DESCRIPTOR.services_by_name["Peer"].methods)


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
    cpu_plan: CpuPlan = CpuPlan(frozenset(), frozenset(), "off")

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


def _cpu_plan(wanted: str, view: DeviceView) -> CpuPlan:
    """Runtime CPUs for ``--runtime-cpus`` (agent.cpu_sets). An emulated device is one of
    several lab agents sharing this host: ``auto`` pins nothing there."""
    if wanted == "auto" and view.emulated:
        return CpuPlan(frozenset(), frozenset(), "not pinned: an emulated device shares the "
                       "host with other lab agents")
    cpus = available_cpus()
    try:
        return plan_cpus(cpus, cpu_speeds(cpus), view.cores, wanted)
    except ValueError as exc:
        raise ConfigError(f"--runtime-cpus {wanted}: {exc}",
                          hint="use auto, off, or CPUs such as 2-3 (see nproc)") from None


def _trust(tls_dir: Path | None, listen: str, insecure: bool) -> TrustStore | None:
    """Fail closed: TLS material that is incomplete stops the agent; no TLS on an address
    other devices can reach needs ``insecure``, said loudly."""
    if tls_dir is not None:
        try:
            return TrustStore(tls_dir)
        except TrustError as exc:
            raise ConfigError(str(exc), hint=exc.hint) from None
    if not is_local(listen):
        if not insecure:
            raise ConfigError(
                f"--listen {listen} is reachable from other machines and there is no "
                "--tls-dir: anyone on the network could load models and read telemetry",
                hint="enroll the device (fleet device enroll NAME) to serve mutual TLS, listen "
                "on 127.0.0.1, or pass --insecure for a trusted test network")
        log.warning("*" * 72)
        log.warning("INSECURE: serving model management on %s WITHOUT TLS or signed "
                    "manifests (--insecure); anyone who can reach it controls this device",
                    listen)
        log.warning("*" * 72)
    return None


def create_server(
    listen: str, data_dir: Path, emulate: str = "", reserve_mib: int = 256,
    restore: bool = True, max_threads: int = 0, inference_listen: str = "",
    tls_dir: Path | None = None, openai_listen: str = "",
    stream_interval_s: float = DEFAULT_STREAM_INTERVAL_S, insecure: bool = False,
    limits: AgentLimits | None = None, runtime_cpus: str = "off",
) -> RunningAgent:
    """Build and start the agent. ``listen`` may use port 0; the bound port is returned.

    ``inference_listen`` (gRPC) and ``openai_listen`` (HTTP, docs/serving.md) are the local,
    certificate-free listeners for apps on the device: loopback or unix sockets only.
    ``stream_interval_s``: streamed text is coalesced within this interval (agent.workers).
    ``tls_dir``: mutual TLS and signed manifests (agent.trust_store); without it the agent
    listens on loopback only unless ``insecure``. ``limits``: agent.limits.
    ``runtime_cpus``: ``auto``, ``off`` or a CPU list for the runtime workers
    (agent.cpu_sets); the plan is returned, and the caller pins the agent's own threads (the
    command does; a test running the agent in its own process does not).
    """
    if not 0.0 <= stream_interval_s <= 1.0:
        raise ConfigError(f"stream interval {stream_interval_s * 1000:g} ms is out of range",
                          hint="use 0 (every token alone) to 1000 ms; default "
                          f"{DEFAULT_STREAM_INTERVAL_S * 1000:g}")
    try:
        limits = (limits or AgentLimits()).check()
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    trust = _trust(tls_dir, listen, insecure)
    host = probe_host()
    data_dir.mkdir(parents=True, exist_ok=True)
    measured = bandwidth.cached(data_dir)
    if emulate:
        path = find_profile_file(emulate)
        if path is None:
            raise ConfigError(f"no profile named {emulate!r}",
                              hint="`fleet profile list` on the controller shows the names")
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
    core.limits = limits
    cpu_plan = _cpu_plan(runtime_cpus, view)
    core.runtime_cpus = cpu_plan.runtime
    log.info("CPUs: %s", cpu_plan.reason)
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=limits.max_concurrent_rpcs),
        options=[*KEEPALIVE_POLICY, *limits.server_options()],
        maximum_concurrent_rpcs=limits.max_concurrent_rpcs,
        # a device's certificate may call the Peer service only (agent.client_auth); a
        # peer certificate nothing else, whatever its role says (agent.peer_serve.PeerGuard)
        interceptors=[ClientCertPolicy(trust, PEER_METHODS), PeerGuard()] if trust else None)
    gate = None
    if trust is not None:
        gate = ManifestGate(trust.signing_keys, trust.device_name, core.store, core.state_lock)
    pb_grpc.add_AgentServiceServicer_to_server(AgentServicer(core, stream_interval_s, gate),
                                               server)
    _add_inference(server, core)
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    if trust is not None:
        if tls_dir is not None:
            add_peer_services(server, core.store, tls_dir)
        port = server.add_secure_port(listen, trust.server_credentials())
    else:
        port = server.add_insecure_port(listen)
    if port == 0:
        raise ConfigError(f"cannot listen on {listen}")
    inference_server = None
    if inference_listen:
        # Apps on the device: loopback or a Unix socket, inference only, no certificates.
        if not is_local(inference_listen):
            raise ConfigError(f"--inference-listen {inference_listen} is not local; use "
                              "unix:///PATH or 127.0.0.1:PORT")
        inference_server = grpc.server(
            futures.ThreadPoolExecutor(max_workers=limits.max_concurrent_rpcs),
            options=limits.server_options(inference=True),
            maximum_concurrent_rpcs=limits.max_concurrent_rpcs)
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
                        inference_server=inference_server, openai=openai, cpu_plan=cpu_plan)
