"""gRPC servicer: protobuf <-> ``AgentCore`` and one table from errors to status codes."""

from __future__ import annotations

import logging
import platform
import time
from collections.abc import Iterator
from dataclasses import asdict
from typing import Any

import grpc

from agent import __version__
from agent.adapters import FORMAT as ADAPTER_FORMAT
from agent.adapters import held_for
from agent.contract import AGENT_CAPABILITIES, CONTRACT_VERSION, ERROR_DETAIL_KEY
from agent.core import AgentCore, default_estimate
from agent.errors import (
    AgentError,
    BlobCorrupt,
    ChecksumMismatch,
    GenerationFailed,
    InsufficientDisk,
    InsufficientMemory,
    InvalidRequest,
    ManifestRejected,
    NoActiveModel,
    NotForThisMachine,
    NotFound,
    NotOnTrial,
    WorkerFailed,
)
from agent.manifest_check import LoadFields, LoadGrant, ManifestGate
from agent.probe import disk_usage
from agent.rpc import agent_pb2 as pb
from agent.rpc import agent_pb2_grpc as pb_grpc
from agent.runtimes.base import GenerationRequest
from agent.store import AdapterRecord, ModelRecord, Slot, check_sha256
from agent.telemetry import DeviceSampler

log = logging.getLogger("edgefleet.agent")

STATUS_BY_ERROR: dict[type[AgentError], grpc.StatusCode] = {
    InvalidRequest: grpc.StatusCode.INVALID_ARGUMENT,
    NotFound: grpc.StatusCode.NOT_FOUND,
    ChecksumMismatch: grpc.StatusCode.DATA_LOSS,
    BlobCorrupt: grpc.StatusCode.DATA_LOSS,
    InsufficientMemory: grpc.StatusCode.RESOURCE_EXHAUSTED,
    InsufficientDisk: grpc.StatusCode.RESOURCE_EXHAUSTED,
    NotForThisMachine: grpc.StatusCode.FAILED_PRECONDITION,
    NoActiveModel: grpc.StatusCode.FAILED_PRECONDITION,
    WorkerFailed: grpc.StatusCode.UNAVAILABLE,
    GenerationFailed: grpc.StatusCode.INTERNAL,
    ManifestRejected: grpc.StatusCode.PERMISSION_DENIED,  # ManifestStale too
    NotOnTrial: grpc.StatusCode.FAILED_PRECONDITION,
}


def _abort(context: grpc.ServicerContext, exc: AgentError) -> Any:
    code = next((STATUS_BY_ERROR[k] for k in type(exc).__mro__ if k in STATUS_BY_ERROR),
                grpc.StatusCode.INTERNAL)
    log.warning("%s: %s", code.name, exc)
    detail = pb.ErrorDetail(kind=exc.kind.value, message=str(exc))  # type: ignore[arg-type]
    context.set_trailing_metadata(((ERROR_DETAIL_KEY, detail.SerializeToString()),))
    context.abort(code, str(exc))


def _model_info(record: ModelRecord, active: bool, state: str,
                worker_pid: int = 0, on_trial: bool = False,
                base_sha256: str = "", **slot: Any) -> pb.ModelInfo:
    return pb.ModelInfo(
        name=record.name, variant=record.variant, sha256=record.sha256, format=record.format,
        size_bytes=record.size_bytes, state=state, active=active, n_ctx=record.n_ctx,
        worker_pid=worker_pid, on_trial=on_trial, base_sha256=base_sha256, **slot,
    )


def slot_message(core: AgentCore, slot: Slot) -> pb.ModelSlot:
    loaded = core.loaded(slot.name)
    resident = loaded is not None and slot.active is not None and \
        loaded.record.sha256 == slot.active.sha256
    return pb.ModelSlot(
        name=slot.name, active_sha256=slot.active.sha256 if slot.active else "",
        previous_sha256=slot.previous.sha256 if slot.previous else "",
        on_trial=slot.trial, trial_seconds_left=core.trial_seconds_left(slot.name),
        aliases=list(slot.aliases), pinned=slot.pinned, resident=resident,
        memory_bytes=core.memory_of(loaded) if loaded and resident else (
            slot.memory_bytes or (default_estimate(slot.active) if slot.active else 0)),
        last_used_at=core.last_used(slot.name), reverted_sha256=slot.reverted,
        reverted_reason=slot.reverted_reason,
        reverted_cause=slot.reverted_cause.value)  # type: ignore[arg-type]


def generation_request(request: pb.GenerateRequest, stream_interval_s: float
                       ) -> GenerationRequest:
    return GenerationRequest(
        prompt=request.prompt, max_tokens=request.max_tokens or 32,
        temperature=request.temperature,
        top_p=request.top_p if request.HasField("top_p") else None,
        stop=tuple(request.stop), seed=request.seed if request.HasField("seed") else None,
        stream_interval_s=stream_interval_s,
    )


class AgentServicer(pb_grpc.AgentServiceServicer):
    def __init__(self, core: AgentCore, stream_interval_s: float = 0.0,
                 manifests: ManifestGate | None = None) -> None:
        self.core = core
        self.sampler = DeviceSampler()
        self.stream_interval_s = stream_interval_s  # see agent.workers: the token path
        self.started_unix = time.time()
        # with a pinned signing key: every load is checked and acted on as signed
        self.manifests = manifests

    def GetVersion(self, request: pb.GetVersionRequest, context: grpc.ServicerContext) -> Any:
        return pb.GetVersionResponse(
            agent_version=__version__, contract_version=CONTRACT_VERSION,
            capabilities=sorted(c.value for c in AGENT_CAPABILITIES), time_unix=time.time(),
            started_unix=self.started_unix, python=platform.python_version())

    def GetProfile(self, request: pb.GetProfileRequest, context: grpc.ServicerContext) -> Any:
        core = self.core
        view, host = core.view, core.host
        free = core.disk_free()
        _, total = disk_usage(core.store.root)
        if view.disk_limit_bytes:
            total = min(total, view.disk_limit_bytes)
        profile = pb.HardwareProfile(
            device_model=view.device_model, arch=view.arch, cpu_model=view.cpu_model,
            cores=view.cores, cpu_flags=list(view.cpu_flags),
            ram_total_bytes=view.ram_total_bytes,
            ram_available_bytes=max(0, core.memory_budget() + view.reserve_bytes),
            disk_free_bytes=free, disk_total_bytes=total, gpu=view.gpu, npu=view.npu,
            mem_bandwidth_gbps=view.mem_bandwidth_gbps, os=host.os, python=host.python,
            runtimes=list(host.runtimes), emulated=view.emulated, profile=view.name,
            agent_version=__version__, swap_total_bytes=host.swap_total_bytes,
            cpu_clusters=list(host.cpu.clusters), power_mode=host.power_mode,
            execution_providers=list(host.execution_providers),
            bandwidth_method="profile" if view.emulated else (
                core.bandwidth.method if core.bandwidth else ""),
            l4t_release=host.l4t_release,
            host=pb.HostProbe(
                arch=host.arch, cpu_model=host.cpu.model, cores=host.cpu.cores,
                ram_total_bytes=host.ram_total_bytes,
                ram_available_bytes=host.ram_available_bytes,
                cpu_flags=list(host.cpu.flags), device_model=host.device_model,
                mem_bandwidth_gbps=core.bandwidth.gbps if core.bandwidth else 0.0,
                cpu_clusters=list(host.cpu.clusters), gpu=host.gpu, npu=host.npu,
            ),
        )
        return pb.GetProfileResponse(profile=profile)

    def GetStore(self, request: pb.GetStoreRequest, context: grpc.ServicerContext) -> Any:
        store = self.core.store
        state = store.read_state()
        one = state.legacy  # the single-valued fields: what an agent of one model reports
        scrub = self.core.scrubber.status()
        return pb.GetStoreResponse(
            blobs=store.blobs(), incoming_dir=str(store.incoming_dir.resolve()),
            disk_free_bytes=self.core.disk_free(),
            active_sha256=one.active.sha256 if one.active else "",
            previous_sha256=one.previous.sha256 if one.previous else "",
            active_on_trial=one.trial, reverted_sha256=one.reverted,
            reverted_reason=one.reverted_reason, staged_sha256=state.staged,
            quarantined=[pb.QuarantinedBlob(**asdict(r)) for r in store.ledger.quarantined()],
            reclaimable_bytes=store.reclaimable_bytes(),
            scrub=pb.ScrubStatus(**asdict(scrub)),
            trial_seconds_left=self.core.trial_seconds_left(one.name or None),
            reverted_cause=one.reverted_cause.value,  # type: ignore[arg-type]
            manifest_seq=state.manifest_seq,
            # slots held back by a load with replace on trial are not listed: they come
            # back if it is given up
            slots=[slot_message(self.core, s) for s in state.slots if not s.replaced_by],
            memory_budget_bytes=max(0, self.core.memory_budget()),
        )

    def CheckFit(self, request: pb.CheckFitRequest, context: grpc.ServicerContext) -> Any:
        try:
            result = self.core.check_fit(request.sha256, request.size_bytes,
                                         request.estimated_memory_bytes, request.reclaim,
                                         request.name, request.replace)
        except AgentError as exc:
            return _abort(context, exc)
        return pb.CheckFitResponse(**result)

    def LoadModel(self, request: pb.LoadModelRequest, context: grpc.ServicerContext) -> Any:
        fields = LoadFields(
            sha256=request.sha256, size_bytes=request.size_bytes, name=request.name,
            variant=request.variant, format=request.format or "gguf", n_ctx=request.n_ctx,
            memory_bytes=request.estimated_memory_bytes, trial=request.trial,
            trial_seconds=request.trial_seconds, base_sha256=request.base_sha256,
            aliases=tuple(request.aliases), replace=request.replace, pinned=request.pinned)
        try:
            if self.manifests is not None:
                grant = self.manifests.admit(fields, request.manifest,
                                             request.manifest_signature)
                log.info("manifest %d (rollout %s) admitted: %s %s", grant.seq,
                         grant.rollout or "-", grant.record.name, grant.record.variant)
            else:  # no pinned key: a test or lab agent on loopback (agent.server)
                grant = unsigned_grant(fields)
            record = grant.record
            if record.format == ADAPTER_FORMAT:
                return self._load_adapter(grant)
            slot = self.core.store.read_state().slot(record.name)
            before = slot.active if slot else None
            seconds = self.core.load(record, grant.memory_bytes, trial=grant.trial,
                                     trial_seconds=grant.trial_seconds,
                                     aliases=grant.aliases or None, replace=grant.replace,
                                     pinned=grant.pinned)
        except AgentError as exc:
            return _abort(context, exc)
        loaded = self.core.loaded(record.name)
        return pb.LoadModelResponse(
            model=_model_info(record, True, "active", loaded.worker.pid if loaded else 0,
                              on_trial=grant.trial, aliases=sorted(grant.aliases),
                              pinned=grant.pinned, resident=loaded is not None,
                              memory_bytes=self.core.memory_of(loaded) if loaded else 0),
            load_seconds=seconds,
            previous_sha256=before.sha256 if before and before.sha256 != record.sha256 else "",
            swap_strategy=self.core.last_swap_strategy,
            evicted=list(self.core.last_evicted),
        )

    def _load_adapter(self, grant: LoadGrant) -> pb.LoadModelResponse:
        """A signed LoRA adapter on the loaded base: no reload (``agent.adapters``)."""
        record = grant.record
        if not grant.base_sha256:
            raise InvalidRequest("an adapter load needs base_sha256 (the model it applies on)")
        adapter = AdapterRecord(record.sha256, record.name, check_sha256(grant.base_sha256),
                                record.size_bytes)
        seconds = self.core.load_adapter(adapter, trial=grant.trial,
                                         trial_seconds=grant.trial_seconds)
        return pb.LoadModelResponse(
            model=_model_info(record, True, "loaded", on_trial=grant.trial,
                              base_sha256=adapter.base_sha256),
            load_seconds=seconds, swap_strategy="adapter", evicted=list(self.core.last_evicted))

    def StageModel(self, request: pb.StageModelRequest, context: grpc.ServicerContext) -> Any:
        try:
            size = self.core.stage(request.sha256)
        except AgentError as exc:
            return _abort(context, exc)
        return pb.StageModelResponse(size_bytes=size)

    def CommitModel(self, request: pb.CommitModelRequest, context: grpc.ServicerContext) -> Any:
        try:
            self.core.commit(request.sha256)
        except AgentError as exc:
            return _abort(context, exc)
        return pb.CommitModelResponse()

    def AbortTrial(self, request: pb.AbortTrialRequest, context: grpc.ServicerContext) -> Any:
        try:
            restored = self.core.abort_trial(request.sha256, request.reason)
        except AgentError as exc:
            return _abort(context, exc)
        loaded = self.core.loaded(restored.name) if restored else None
        return pb.AbortTrialResponse(restored=_model_info(
            restored, True, "loaded" if loaded else "stored",
            loaded.worker.pid if loaded else 0) if restored else None)

    def UnloadModel(self, request: pb.UnloadModelRequest, context: grpc.ServicerContext) -> Any:
        try:
            self.core.unload(request.sha256)
        except AgentError as exc:
            return _abort(context, exc)
        return pb.UnloadModelResponse()

    def ListModels(self, request: pb.ListModelsRequest, context: grpc.ServicerContext) -> Any:
        """Every slot's active model (with its aliases, pinned, resident, last use and
        memory), its previous one, and the adapters held for the active one."""
        models = []
        for slot in self.core.store.read_state().slots:
            info = slot_message(self.core, slot)
            loaded = self.core.loaded(slot.name)
            if slot.active is not None:
                models.append(_model_info(
                    slot.active, slot.serving, "loaded" if info.resident else "stored",
                    loaded.worker.pid if loaded and info.resident else 0,
                    on_trial=slot.trial, aliases=list(slot.aliases), pinned=slot.pinned,
                    resident=info.resident, last_used_at=info.last_used_at,
                    memory_bytes=info.memory_bytes))
            if slot.previous is not None:
                models.append(_model_info(slot.previous, False, "stored"))
            if slot.active is None:
                continue
            trial = slot.adapter_trial
            for a in held_for(slot, slot.active.sha256):
                on_trial = trial is not None and a.sha256 == trial.sha256
                models.append(pb.ModelInfo(
                    name=a.name, sha256=a.sha256, format=ADAPTER_FORMAT,
                    size_bytes=a.size_bytes, base_sha256=a.base_sha256, on_trial=on_trial,
                    state="loaded" if info.resident else "stored",
                    active=on_trial or (trial is None and a.name == slot.adapter_default)))
        return pb.ListModelsResponse(models=models)

    def Generate(self, request: pb.GenerateRequest, context: grpc.ServicerContext) -> Iterator[Any]:
        try:
            stream = self.core.generate_request(
                generation_request(request, self.stream_interval_s), request.sha256,
                request.adapter if request.HasField("adapter") else None, request.model)
            for kind, value in stream:
                if not context.is_active():
                    stream.close()  # client cancelled: stop the runtime, record "cancelled"
                    return
                if kind == "text":
                    yield pb.GenerateResponse(text=value)
                elif kind == "done":
                    yield pb.GenerateResponse(
                        summary=pb.GenerateSummary(
                            prompt_tokens=value.prompt_tokens,
                            completion_tokens=value.completion_tokens,
                            ttft_ms=value.ttft_s * 1000, total_ms=value.total_s * 1000,
                            decode_tokens_per_s=value.decode_tokens_per_s,
                            prefill_tokens_per_s=value.prefill_tokens_per_s,
                            finish_reason=value.finish_reason,
                            sha256=value.sha256, model=value.model,
                            load_wait_ms=value.load_wait_s * 1000,
                            energy_j=value.energy_j,
                            joules_per_token=value.joules_per_token,
                            energy_meter=value.energy_meter,
                        )
                    )
        except AgentError as exc:
            _abort(context, exc)

    def VerifyOutput(self, request: pb.VerifyOutputRequest,
                     context: grpc.ServicerContext) -> Any:
        if not 1 <= (request.max_tokens or 8) <= 64 or not request.prompt:
            return _abort(context, InvalidRequest("VerifyOutput needs a prompt and "
                                                  "max_tokens 1..64"))
        try:
            result = self.core.verify_output(request.prompt, request.max_tokens or 8,
                                             request.sha256)
        except AgentError as exc:
            return _abort(context, exc)
        return pb.VerifyOutputResponse(**result)

    def GetTelemetry(self, request: pb.GetTelemetryRequest, context: grpc.ServicerContext) -> Any:
        core = self.core
        buffer, samples = core.telemetry, core.monitor.log
        limit = min(request.limit or 1000, 10_000)
        records = (buffer.tail(limit) if request.tail
                   else buffer.after(request.after_seq, limit))
        kept = samples.after(request.after_sample_seq, min(request.sample_limit, 10_000))
        used, total = self.sampler.memory()
        energy = core.energy
        live = pb.DeviceSample(
            timestamp=time.time(), cpu_percent=self.sampler.cpu_percent(),
            ram_total_bytes=total, ram_used_bytes=used,
            worker_crashes=buffer.worker_crashes,
            temperatures_c=self.sampler.temperatures(), power_w=energy.watts() or 0.0,
            energy_meter=energy.meter, energy_measured=energy.measured,
            energy_j_total=energy.joules(), requests_total=buffer.total,
        )
        state = core.store.read_state()  # what runs, so a collector asks ListModels on change
        live.active_sha256 = state.active.sha256 if state.active else ""
        live.active_on_trial = state.trial
        return pb.GetTelemetryResponse(
            records=[pb.RequestRecord(**asdict(r)) for r in records],
            next_seq=records[-1].seq if records else request.after_seq, sample=live,
            first_seq=buffer.first_seq, epoch=buffer.epoch, last_seq=buffer.total,
            samples=[pb.DeviceSample(**asdict(r)) for r in kept],
            next_sample_seq=kept[-1].seq if kept else request.after_sample_seq,
            first_sample_seq=samples.first_seq, sample_epoch=samples.epoch,
            last_sample_seq=samples.total, sample_every_s=core.monitor.every_s)

    def Benchmark(self, request: pb.BenchmarkRequest, context: grpc.ServicerContext) -> Any:
        if not 1 <= (request.runs or 1) <= 100 or not 1 <= (request.max_tokens or 32) <= 512:
            return _abort(context, InvalidRequest("runs must be 1..100, max_tokens 1..512"))
        try:
            result = self.core.benchmark(request.runs or 1, request.max_tokens or 32,
                                         list(request.prompts))
        except AgentError as exc:
            return _abort(context, exc)
        return pb.BenchmarkResponse(
            sha256=result.record.sha256, variant=result.record.variant,
            load_seconds=result.load_seconds, peak_rss_bytes=result.peak_rss_bytes,
            energy_meter=self.core.energy.meter,
            samples=[
                pb.BenchmarkSample(
                    run=s.run, prompt_index=s.prompt_index,
                    prompt_tokens=s.stats.prompt_tokens,
                    completion_tokens=s.stats.completion_tokens,
                    ttft_ms=s.stats.ttft_s * 1000,
                    prefill_tokens_per_s=s.stats.prefill_tokens_per_s,
                    decode_tokens_per_s=s.stats.decode_tokens_per_s,
                    total_ms=s.stats.total_s * 1000,
                    energy_j=s.stats.energy_j,
                )
                for s in result.samples
            ],
        )


def unsigned_grant(fields: LoadFields) -> LoadGrant:
    record = ModelRecord.from_dict({
        "sha256": fields.sha256, "name": fields.name, "variant": fields.variant,
        "format": fields.format, "n_ctx": fields.n_ctx, "size_bytes": fields.size_bytes})
    return LoadGrant(record, fields.memory_bytes, fields.trial, fields.trial_seconds, "", 0,
                     fields.base_sha256, tuple(sorted(set(fields.aliases))), fields.replace,
                     fields.pinned)


# What the certificate-free local listener serves apps on the device: generation and
# read-only views. An allow-list: an RPC added to the proto is denied there until it is
# named here.
INFERENCE_RPCS = frozenset({"Generate", "GetProfile", "ListModels", "GetTelemetry", "GetVersion"})


class InferenceOnlyServicer(pb_grpc.AgentServiceServicer):
    """The agent service as seen from the local inference listener (loopback or a Unix
    socket, no certificates): the methods of ``INFERENCE_RPCS``, every other one denied."""

    def __init__(self, core: AgentCore, stream_interval_s: float = 0.0) -> None:
        full = AgentServicer(core, stream_interval_s)
        for name in pb.DESCRIPTOR.services_by_name["AgentService"].methods_by_name:
            setattr(self, name, getattr(full, name) if name in INFERENCE_RPCS
                    else _denied(name))


def _denied(name: str) -> Any:
    def deny(request: Any, context: grpc.ServicerContext) -> Any:
        context.abort(grpc.StatusCode.PERMISSION_DENIED,
                      f"{name} is not served on the local inference listener; model "
                      "management is only served on the management listener")

    return deny
