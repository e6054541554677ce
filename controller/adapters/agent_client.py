"""GrpcAgentClient: the controller's side of the agent contract, with deadlines and one
place where gRPC errors become ours."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from agent.contract import ERROR_DETAIL_KEY, MODEL_HEALTH_SERVICE, ErrorKind
from agent.rpc import agent_pb2 as pb
from agent.rpc import agent_pb2_grpc as pb_grpc
from agent.rpc import peer_pb2 as ppb
from agent.rpc import peer_pb2_grpc as ppb_grpc
from controller.core.display import terminal_safe
from controller.errors import AgentRefused, Unreachable

T = TypeVar("T")
# A link that drops while a call waits (a LoadModel takes minutes on a large model) sends no
# RST: ping every 10 s during calls and give the connection up after 10 s without an answer,
# so the call fails UNAVAILABLE instead of waiting out its deadline (agent.server allows it).
KEEPALIVE = [("grpc.keepalive_time_ms", 10_000), ("grpc.keepalive_timeout_ms", 10_000),
             ("grpc.http2.max_pings_without_data", 0),
             # a connection of this client only: gRPC otherwise shares connections between
             # channels to the same address in a process, and one to an agent that went away
             # (a restart, a lab torn down) answers a new client's calls with UNAVAILABLE
             ("grpc.use_local_subchannel_pool", 1)]

HINTS = {
    "RESOURCE_EXHAUSTED": "the device lacks memory or disk for this variant; `fleet plan` "
    "shows what fits",
    "DATA_LOSS": "the file arrived corrupt and was deleted on the device; re-run the deploy",
    "FAILED_PRECONDITION": "the device cannot run this file; check its profile and runtimes",
    "NOT_FOUND": "the blob is not on the device; re-run the deploy to send it",
    "UNAUTHENTICATED": "the agent does not accept this controller's certificate (revoked, or "
    "of another CA): `fleet pki status` shows the certificates; `fleet pki push` gives the "
    "device the current trust",
}
# by the agent's error kind, where the status code alone would mislead
KIND_HINTS = {
    ErrorKind.BLOB_CORRUPT: "the device's stored copy went bad on its disk and was "
    "quarantined there; the next deploy sends it again; a disk that keeps doing this is "
    "failing",
    ErrorKind.MANIFEST_REJECTED: "the device refused the signed load order (the message names "
    "the check); `fleet pki status` shows the signing key, `fleet pki push` gives the device "
    "the current one",
    ErrorKind.ADAPTER_MISMATCH: "the adapter was made for another base model; "
    "`fleet adapter list` shows each adapter's base",
    ErrorKind.MANIFEST_STALE: "the device accepted a newer load order than this controller's "
    "counter (its database restored from a backup, or another controller): if that is "
    "expected, `fleet device resync-version NAME` moves the counter past the device's mark "
    "(logged)",
}


@dataclass(frozen=True)
class GenerationResult:
    text: str
    summary: pb.GenerateSummary


class GenerationStream:
    """Iterate the token events of a Generate call; ``cancel()`` stops it on the device."""

    def __init__(self, client: GrpcAgentClient, call: Any) -> None:
        self._client = client
        self._call = call

    def __iter__(self) -> Iterator[pb.GenerateResponse]:
        try:
            for event in self._call:
                yield clean_strings(event)
        except grpc.RpcError as exc:
            if exc.code() == grpc.StatusCode.CANCELLED:
                return
            raise self._client._map(exc) from exc

    def cancel(self) -> None:
        self._call.cancel()


class GrpcAgentClient:
    def __init__(self, name: str, host: str, port: int, timeout_s: float = 30.0,
                 on_close: Callable[[], None] | None = None,
                 tls: tuple[bytes, bytes, bytes] | None = None) -> None:
        """``tls`` = (fleet CA, controller key, controller certificate): mutual TLS, and the
        agent's certificate must be issued to ``name`` (the device) by that CA."""
        self.name = name
        self.address = f"{host}:{port}"
        self._on_close = on_close
        self.timeout_s = timeout_s
        if tls is not None:
            ca, key, cert = tls
            credentials = grpc.ssl_channel_credentials(root_certificates=ca, private_key=key,
                                                       certificate_chain=cert)
            self._channel = grpc.secure_channel(
                self.address, credentials,
                options=[("grpc.ssl_target_name_override", name), *KEEPALIVE])
        else:
            self._channel = grpc.insecure_channel(self.address, options=KEEPALIVE)
        self._stub = pb_grpc.AgentServiceStub(self._channel)
        self._health = health_pb2_grpc.HealthStub(self._channel)

    def close(self) -> None:
        self._channel.close()
        if self._on_close is not None:
            self._on_close()
            self._on_close = None

    def __enter__(self) -> GrpcAgentClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _call(self, fn: Callable[..., T], request: Any, timeout: float | None = None) -> T:
        try:
            return clean_strings(fn(request, timeout=timeout or self.timeout_s))
        except grpc.RpcError as exc:
            raise self._map(exc) from exc

    def _map(self, exc: grpc.RpcError) -> Exception:
        code = exc.code() if hasattr(exc, "code") else grpc.StatusCode.UNKNOWN
        # the agent's words reach terminals and the database: no control sequences
        details = terminal_safe(exc.details() if hasattr(exc, "details") else str(exc))
        kind = _error_kind(exc)
        if kind is ErrorKind.WORKER_FAILED:
            return AgentRefused(f"{self.name}: {details}", code=code.name, kind=kind,
                                detail=details,
                                hint="the agent restarts the runtime on its last good model; "
                                "`fleet status` shows the crash count")
        if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
            detail = (f"agent at {self.address} not reachable ({code.name}: "
                      f"{(details or '').strip()[:160]})")
            return Unreachable(
                f"{self.name}: {detail}",
                hint=f"is `fleet-agent serve` running on the device? `fleet device rescue "
                f"{self.name}` restarts it" if code == grpc.StatusCode.UNAVAILABLE else
                "the device is slow or the link is down; retry", detail=detail)
        return AgentRefused(f"{self.name}: agent refused: {details}",
                            hint=(KIND_HINTS.get(kind) or HINTS.get(code.name, "")
                                  ).replace("NAME", self.name),
                            code=code.name, kind=kind, detail=details)

    def get_version(self, timeout: float = 5.0) -> pb.GetVersionResponse | None:
        """The agent's version, capabilities and clock; None from an agent that predates
        GetVersion (it answers UNIMPLEMENTED)."""
        try:
            return self._call(self._stub.GetVersion, pb.GetVersionRequest(), timeout)
        except AgentRefused as exc:
            if exc.code == grpc.StatusCode.UNIMPLEMENTED.name:
                return None
            raise

    def get_profile(self, timeout: float = 5.0) -> pb.HardwareProfile:
        return self._call(self._stub.GetProfile, pb.GetProfileRequest(), timeout).profile

    def get_store(self) -> pb.GetStoreResponse:
        return self._call(self._stub.GetStore, pb.GetStoreRequest())

    def check_fit(self, sha256: str, size_bytes: int, memory_bytes: int,
                  reclaim: bool = False, slot: str = "", replace: bool = False
                  ) -> pb.CheckFitResponse:
        """``reclaim``: let the store free unused blobs and idle uploads to make room. The
        agent may hash a held blob whose fingerprint changed, hence the longer deadline.
        ``slot``: the model name it would load into, so that memory is judged against what
        stays loaded there (``replace``: nothing else does)."""
        request = pb.CheckFitRequest(sha256=sha256, size_bytes=size_bytes,
                                     estimated_memory_bytes=memory_bytes, reclaim=reclaim,
                                     name=slot, replace=replace)
        return self._call(self._stub.CheckFit, request, max(self.timeout_s, 300.0))

    def load_model(self, request: pb.LoadModelRequest, timeout: float = 600.0) -> Any:
        return self._call(self._stub.LoadModel, request, timeout)

    def stage_model(self, sha256: str) -> int:
        return int(self._call(self._stub.StageModel, pb.StageModelRequest(sha256=sha256),
                              600.0).size_bytes)

    def commit_model(self, sha256: str) -> None:
        self._call(self._stub.CommitModel, pb.CommitModelRequest(sha256=sha256))

    def abort_trial(self, sha256: str, reason: str) -> pb.ModelInfo | None:
        """Give up the model on trial; the model the agent went back to (None: none)."""
        response = self._call(self._stub.AbortTrial,
                              pb.AbortTrialRequest(sha256=sha256, reason=reason))
        return response.restored if response.HasField("restored") else None

    def unload_model(self, sha256: str = "") -> None:
        self._call(self._stub.UnloadModel, pb.UnloadModelRequest(sha256=sha256))

    def list_models(self, timeout: float | None = None) -> list[pb.ModelInfo]:
        return list(self._call(self._stub.ListModels, pb.ListModelsRequest(), timeout).models)

    def telemetry(self, after_seq: int = 0, limit: int = 1000,
                  tail: bool = False) -> pb.GetTelemetryResponse:
        request = pb.GetTelemetryRequest(after_seq=after_seq, limit=limit, tail=tail)
        return self._call(self._stub.GetTelemetry, request, 5.0)

    def telemetry_since(self, after_seq: int, after_sample_seq: int, limit: int,
                        timeout: float) -> pb.GetTelemetryResponse:
        """Request records and kept device samples after the two cursors (the collector)."""
        request = pb.GetTelemetryRequest(after_seq=after_seq, limit=limit,
                                         after_sample_seq=after_sample_seq, sample_limit=limit)
        return self._call(self._stub.GetTelemetry, request, timeout)

    def benchmark(self, runs: int, max_tokens: int, timeout: float = 600.0
                  ) -> pb.BenchmarkResponse:
        request = pb.BenchmarkRequest(runs=runs, max_tokens=max_tokens)
        return self._call(self._stub.Benchmark, request, timeout)

    def verify_output(self, prompt: str, max_tokens: int, timeout: float = 300.0,
                      sha256: str = "") -> pb.VerifyOutputResponse:
        """``sha256``: the model to check ("": the active one)."""
        request = pb.VerifyOutputRequest(prompt=prompt, max_tokens=max_tokens, sha256=sha256)
        return self._call(self._stub.VerifyOutput, request, timeout)

    def agent_serving(self) -> bool:
        """The agent's overall health (grpc.health.v1, service "")."""
        response = self._call(self._health.Check, health_pb2.HealthCheckRequest(service=""), 5.0)
        return bool(response.status == health_pb2.HealthCheckResponse.SERVING)

    def fetch_blob(self, request: ppb.FetchBlobRequest, timeout: float = 86_400.0
                   ) -> Iterator[ppb.FetchBlobProgress]:
        """Have the device fetch a blob from its peers; its progress as it goes (the fetch
        stops when this iteration is abandoned). UNIMPLEMENTED: the device has no peer
        identity (enrolled before peer transfers, or without TLS)."""
        call = ppb_grpc.TransferStub(self._channel).FetchBlob(request, timeout=timeout)
        try:
            yield from call
        except grpc.RpcError as exc:
            raise self._map(exc) from exc
        finally:
            call.cancel()

    def model_serving(self) -> bool:
        request = health_pb2.HealthCheckRequest(service=MODEL_HEALTH_SERVICE)
        response = self._call(self._health.Check, request, 5.0)
        return bool(response.status == health_pb2.HealthCheckResponse.SERVING)

    def stream(self, prompt: str, max_tokens: int = 16, temperature: float = 0.0,
               timeout: float = 120.0, adapter: str | None = None,
               model: str = "") -> GenerationStream:
        """``adapter``: a LoRA adapter by name (None: the device's deployed one, "": the
        base alone); ``model``: a model name or alias ("": the device's default model)."""
        request = pb.GenerateRequest(prompt=prompt, max_tokens=max_tokens,
                                     temperature=temperature, adapter=adapter, model=model)
        return GenerationStream(self, self._stub.Generate(request, timeout=timeout))

    def generate(self, prompt: str, max_tokens: int = 16, temperature: float = 0.0,
                 adapter: str | None = None, model: str = "") -> GenerationResult:
        pieces = []
        summary = pb.GenerateSummary()
        for event in self.stream(prompt, max_tokens, temperature, adapter=adapter,
                                 model=model):
            if event.HasField("summary"):
                summary = event.summary
            else:
                pieces.append(event.text)
        return GenerationResult("".join(pieces), summary)


def clean_strings(message: T) -> T:
    """Every string an agent sent, without terminal control sequences (newlines and tabs
    kept): what a device says reaches terminals, the dashboard and the database."""
    if not hasattr(message, "ListFields"):
        return message
    for field, value in message.ListFields():
        if field.type == field.TYPE_STRING:
            if field.is_repeated:
                if any(not v.isprintable() for v in value):
                    value[:] = [terminal_safe(v, keep_newlines=True) for v in value]
            elif not value.isprintable():
                setattr(message, field.name, terminal_safe(value, keep_newlines=True))
        elif field.type == field.TYPE_MESSAGE:
            if field.message_type.GetOptions().map_entry:
                for key in [k for k in value if isinstance(k, str) and not k.isprintable()]:
                    value[terminal_safe(key)] = value.pop(key)
            elif field.is_repeated:
                for item in value:
                    clean_strings(item)
            else:
                clean_strings(value)
    return message


def _error_kind(exc: grpc.RpcError) -> ErrorKind:
    """The agent's ErrorDetail from the trailing metadata (UNSPECIFIED when absent, e.g. a
    transport error or an older agent)."""
    metadata = exc.trailing_metadata() if hasattr(exc, "trailing_metadata") else None
    raw = dict(metadata or ()).get(ERROR_DETAIL_KEY)
    if not isinstance(raw, bytes):
        return ErrorKind.UNSPECIFIED
    try:
        return ErrorKind(pb.ErrorDetail.FromString(raw).kind)
    except ValueError:  # a kind newer than this controller, or garbage
        return ErrorKind.UNSPECIFIED
