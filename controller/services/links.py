"""Opening a rollout's DeviceLink to a device: its agent over gRPC (mutual TLS once
enrolled, through a bastion when it sits behind one) and its SFTP upload path."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from agent.rpc import agent_pb2 as pb
from controller import failpoints
from controller.adapters.agent_client import GrpcAgentClient
from controller.adapters.device_link import GrpcDeviceLink
from controller.adapters.tables import Device
from controller.artifacts import LocalArtifact
from controller.errors import TransferInterrupted, UnknownDevice, UploadRefused
from controller.services.context import Fleet
from controller.services.manifests import manifest_signer
from controller.services.ports import Artifact, DeviceLink, LinkFactory, Uploaded
from controller.services.uploading import UploadTally, send


@dataclass(frozen=True)
class UploadOptions:
    retries: int = 3
    backoff_s: float = 1.0
    limit_bytes_per_s: float = 0.0
    streams: int = 4
    progress: Callable[[str, int, int], None] = lambda device, done, total: None
    # (device, peer, verified bytes, total) of a fetch from peers
    peer_progress: Callable[[str, str, int, int], None] = (
        lambda device, source, done, total: None)


def link_factory(fleet: Fleet, options: UploadOptions, rollout: str = "") -> LinkFactory:
    def connect(name: str) -> DeviceLink:
        devices = fleet.inventory
        try:
            device = devices.get_device(name)
        except UnknownDevice:
            raise UnknownDevice(f"{name} is no longer registered",
                                hint="`fleet device add` it again, or abort the rollout") from None
        client = fleet.client(device)
        # a peer grant is not a load order: it carries its own kind and expiry
        return GrpcDeviceLink(client, manifest_signer(fleet, device.name, rollout),
                              _uploader(fleet, device, options), _peer_progress(options),
                              sign_grant=fleet.pki.sign_manifest)

    return connect


def _peer_progress(options: UploadOptions) -> Callable[[str, str, int, int], None]:
    def progress(device: str, source: str, done: int, total: int) -> None:
        options.peer_progress(device, source, done, total)
        if total and done * 2 >= total:
            failpoints.hit("fetch.half")

    return progress


def _uploader(fleet: Fleet, device: Device, options: UploadOptions
              ) -> Callable[[GrpcAgentClient, Artifact, pb.CheckFitResponse, str, int, bool],
                            Uploaded]:
    settings = UploadOptions(options.retries, options.backoff_s, options.limit_bytes_per_s,
                             options.streams, options.progress)
    in_order = replace(settings, streams=1)  # peers read it as it arrives: front to back

    def upload(client: GrpcAgentClient, art: Artifact, fit: pb.CheckFitResponse,
               incoming_dir: str, memory: int, sequential: bool) -> Uploaded:
        local = LocalArtifact(Path(art.path), art.sha256, art.size_bytes)
        tally = UploadTally()  # what the device acknowledged, kept when it fails too
        try:
            sent = send(fleet, client, device, local, fit, incoming_dir, memory,
                        in_order if sequential else settings, tally)
        except (TransferInterrupted, UploadRefused) as exc:
            exc.sent = max(exc.sent, tally.acked)
            raise
        return Uploaded(max(sent, tally.acked), tuple(tally.interruptions))

    return upload
