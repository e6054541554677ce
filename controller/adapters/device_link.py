"""GrpcDeviceLink: the rollout's port to one device (controller.services.ports.DeviceLink)
over the agent's gRPC API; protobuf goes no further than this module.

Load orders are signed here: the manifest carries everything the agent acts on (the blob, its
name and format, n_ctx, the memory estimate, runtime options, the trial with its deadline);
the signer (controller.services.manifests) binds it to the device, the rollout, the device's
next manifest version and an expiry."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from agent.contract import ErrorKind, RevertCause
from agent.peer_contract import GRANT_KIND, GRANT_TTL_S, chunks_sha256
from agent.rpc import agent_pb2 as pb
from agent.rpc import peer_pb2 as ppb
from controller.adapters.agent_client import GrpcAgentClient
from controller.core.compat import AgentVersion
from controller.core.output_check import OutputSample
from controller.errors import AgentRefused
from controller.services.ports import (
    AdapterView,
    Artifact,
    Fetched,
    FitView,
    Generation,
    LoadOrder,
    ModelView,
    PeerOrder,
    SlotView,
    StoreView,
    Summary,
    Uploaded,
)

Signer = Callable[[dict[str, Any]], tuple[bytes, bytes]]
# (client, artifact, the device's CheckFit answer, incoming dir, memory, sequential) -> what
# went
Uploader = Callable[[GrpcAgentClient, Artifact, pb.CheckFitResponse, str, int, bool], Uploaded]
# (device, the peer bytes come from now, verified bytes, total)
PeerProgress = Callable[[str, str, int, int], None]


def slot_view(s: pb.ModelSlot) -> SlotView:
    return SlotView(
        name=s.name, active=s.active_sha256, previous=s.previous_sha256, on_trial=s.on_trial,
        trial_seconds_left=s.trial_seconds_left, aliases=tuple(sorted(s.aliases)),
        pinned=s.pinned, resident=s.resident, memory_bytes=s.memory_bytes,
        last_used_at=s.last_used_at, reverted=s.reverted_sha256,
        reverted_reason=s.reverted_reason, reverted_cause=RevertCause(s.reverted_cause))


def store_view(s: pb.GetStoreResponse) -> StoreView:
    return StoreView(
        active=s.active_sha256, previous=s.previous_sha256, on_trial=s.active_on_trial,
        trial_seconds_left=s.trial_seconds_left, staged=s.staged_sha256,
        blobs=frozenset(s.blobs), incoming_dir=s.incoming_dir,
        disk_free_bytes=s.disk_free_bytes, reverted=s.reverted_sha256,
        reverted_reason=s.reverted_reason, reverted_cause=RevertCause(s.reverted_cause),
        slots=tuple(slot_view(slot) for slot in s.slots),
        memory_budget_bytes=s.memory_budget_bytes)


def agent_version(answer: pb.GetVersionResponse | None, sent: float,
                  received: float) -> AgentVersion:
    """GetVersion's answer (None: an agent that predates it); the clock skew is the agent's
    time against the middle of the round trip."""
    if answer is None:
        return AgentVersion()
    return AgentVersion(answer.agent_version, answer.contract_version,
                        frozenset(answer.capabilities),
                        answer.time_unix - (sent + received) / 2 if answer.time_unix else None,
                        answer.started_unix)


def fit_view(f: pb.CheckFitResponse) -> FitView:
    return FitView(f.fits, f.already_held, f.disk_free_bytes, f.disk_needed_bytes,
                   f.memory_budget_bytes, f.reason, f.staged_bytes, f.staged_sha256,
                   f.reclaimed_bytes)


def manifest_fields(order: LoadOrder) -> dict[str, Any]:
    """What the manifest of a load order says. The placement keys ("aliases", sorted,
    "replace", "pinned") go only to an agent of several models: an older agent checks the
    fields it knows and would ignore them, so it gets today's manifest (and replaces)."""
    art = order.artifact
    name = art.adapter or art.model  # an adapter is loaded under its own name
    fields: dict[str, Any] = {
        "sha256": art.sha256, "size_bytes": art.size_bytes, "name": name,
        "variant": art.variant, "format": art.format, "trial": order.trial,
        "trial_seconds": order.trial_seconds, "n_ctx": order.n_ctx,
        "memory_bytes": order.memory_bytes, "runtime": {}}
    if art.base_sha256:  # signed: the agent applies the adapter on this base only
        fields["base_sha256"] = art.base_sha256
    if order.placement is not None:
        fields |= {"aliases": sorted(order.placement.aliases),
                   "replace": order.placement.replace, "pinned": order.placement.pinned}
    return fields


def load_request(order: LoadOrder, sign: Signer) -> pb.LoadModelRequest:
    art, placement = order.artifact, order.placement
    fields = manifest_fields(order)
    manifest, signature = sign(fields)
    request = pb.LoadModelRequest(
        sha256=art.sha256, name=fields["name"], variant=art.variant, format=art.format,
        n_ctx=order.n_ctx, size_bytes=art.size_bytes,
        estimated_memory_bytes=order.memory_bytes, manifest=manifest,
        manifest_signature=signature, trial=order.trial, trial_seconds=order.trial_seconds,
        base_sha256=art.base_sha256)
    if placement is not None:
        request.aliases.extend(sorted(placement.aliases))
        request.replace, request.pinned = placement.replace, placement.pinned
    return request


def adapter_view(models: list[pb.ModelInfo], base_sha256: str = "") -> AdapterView:
    """The adapters ListModels names (format "lora"), of the base ``base_sha256`` when given
    (a device of several models holds adapters per base)."""
    held = [m for m in models if m.format == "lora"
            and (not base_sha256 or not m.base_sha256 or m.base_sha256 == base_sha256)]
    trial = next((m.sha256 for m in held if m.on_trial), "")
    default = next((m.sha256 for m in held if m.active and not m.on_trial), "")
    return AdapterView(default=default, trial=trial,
                       names=tuple((m.name, m.sha256) for m in held))


def peer_grant(order: PeerOrder, sign: Signer) -> ppb.PeerGrant:
    """The signed instruction that lets ``order.receiver`` read the blob from the sources
    (agent.peer_identity checks it on both ends)."""
    art, now = order.artifact, int(time.time())
    instruction, signature = sign({
        "kind": GRANT_KIND, "sha256": art.sha256, "size_bytes": art.size_bytes,
        "chunk_bytes": order.chunks.chunk_bytes,
        "chunks_sha256": chunks_sha256(order.chunks.digests), "receiver": order.receiver,
        "sources": [s.name for s in order.sources], "rollout": order.rollout,
        "issued_at": now, "expires_at": now + GRANT_TTL_S})
    return ppb.PeerGrant(instruction=instruction, signature=signature,
                         chunk_sha256=list(order.chunks.digests))


def fetched(last: ppb.FetchBlobProgress | None, size: int) -> Fetched:
    if last is None:
        return Fetched(False, failure="the device ended the fetch without a word")
    complete = last.done and not last.failure and last.verified_bytes >= size
    return Fetched(complete, tuple((r.name, r.bytes) for r in last.received),
                   last.resumed_bytes, tuple(last.dropped),
                   "" if complete else last.failure or "the fetch stopped before the end")


class GrpcDeviceLink:
    def __init__(self, client: GrpcAgentClient, sign: Signer, uploader: Uploader,
                 peer_progress: PeerProgress = lambda device, source, done, total: None,
                 sign_grant: Signer | None = None) -> None:
        """``sign``: load orders (bound to the device, a version and an expiry:
        controller.services.manifests); ``sign_grant``: peer grants, signed as they are
        (their own expiry and kind: agent.peer_identity)."""
        self.client = client
        self._sign = sign
        self._sign_grant = sign_grant or sign
        self._uploader = uploader
        self._peer_progress = peer_progress
        self._fit: pb.CheckFitResponse | None = None

    def capabilities(self) -> AgentVersion:
        sent = time.time()
        answer = self.client.get_version()
        return agent_version(answer, sent, time.time())

    def store(self) -> StoreView:
        return store_view(self.client.get_store())

    def check_fit(self, sha256: str, size_bytes: int, memory_bytes: int,
                  reclaim: bool = False, slot: str = "", replace: bool = False) -> FitView:
        self._fit = self.client.check_fit(sha256, size_bytes, memory_bytes, reclaim=reclaim,
                                          slot=slot, replace=replace)
        return fit_view(self._fit)

    def upload(self, artifact: Artifact, fit: FitView, incoming_dir: str,
               memory_bytes: int, sequential: bool = False) -> Uploaded:
        first = self._fit or pb.CheckFitResponse(
            fits=fit.fits, already_held=fit.already_held, staged_bytes=fit.staged_bytes,
            staged_sha256=fit.staged_sha256)
        return self._uploader(self.client, artifact, first, incoming_dir, memory_bytes,
                              sequential)

    def fetch_from_peers(self, order: PeerOrder) -> Fetched:
        request = ppb.FetchBlobRequest(
            grant=peer_grant(order, self._sign_grant),
            sources=[ppb.PeerSource(name=s.name, address=s.address) for s in order.sources])
        last = None
        try:
            for progress in self.client.fetch_blob(request):
                last = progress
                self._peer_progress(order.receiver, progress.source, progress.verified_bytes,
                                    progress.size_bytes)
        except AgentRefused as exc:  # no peer identity, an older agent, a refused grant
            if exc.kind is ErrorKind.INSUFFICIENT_DISK:
                raise  # the controller's copy would not fit either
            return Fetched(False, failure=f"the device cannot fetch from peers: {exc.detail}")
        return fetched(last, order.artifact.size_bytes)

    def stage(self, sha256: str) -> int:
        return self.client.stage_model(sha256)

    def adapters(self, base_sha256: str = "") -> AdapterView:
        return adapter_view(self.client.list_models(), base_sha256)

    def load(self, order: LoadOrder) -> None:
        self.client.load_model(load_request(order, self._sign))

    def commit(self, sha256: str) -> None:
        self.client.commit_model(sha256)

    def abort_trial(self, sha256: str, reason: str) -> ModelView | None:
        restored = self.client.abort_trial(sha256, reason)
        if restored is None:
            return None
        return ModelView(restored.name, restored.variant, restored.sha256)

    def model_serving(self) -> bool:
        return self.client.model_serving()

    def generate(self, prompt: str, max_tokens: int, model: str = "") -> Generation:
        result = self.client.generate(prompt, max_tokens, model=model)
        s = result.summary
        return Generation(result.text, Summary(
            s.prompt_tokens, s.completion_tokens, s.ttft_ms, s.decode_tokens_per_s,
            s.joules_per_token, s.energy_meter, s.finish_reason))

    def verify_output(self, prompt: str, max_tokens: int, sha256: str = "") -> OutputSample:
        r = self.client.verify_output(prompt, max_tokens, sha256=sha256)
        return OutputSample(finite=r.logits_finite, prompt_tokens=r.prompt_tokens,
                            mean_logprob=r.prompt_mean_logprob, tokens=tuple(r.tokens),
                            margins=tuple(r.margins), text=r.text, problem=r.problem)

    def close(self) -> None:
        self.client.close()
