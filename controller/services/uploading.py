"""Uploads of one artifact to one device: resumable, retried with backoff, over one SFTP
stream or several channels for large files."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Protocol

from agent.rpc import agent_pb2 as pb
from controller.adapters.agent_client import GrpcAgentClient
from controller.adapters.ssh import sha256_prefix
from controller.adapters.ssh_parallel import push_ranges
from controller.adapters.tables import Device
from controller.artifacts import LocalArtifact
from controller.errors import TransferInterrupted, Unreachable
from controller.services.context import Fleet

PARALLEL_MIN_BYTES = 64 * 1024 * 1024


class UploadSettings(Protocol):
    @property
    def retries(self) -> int: ...  # resumed retries after a dropped link
    @property
    def backoff_s(self) -> float: ...  # doubled after each retry
    @property
    def limit_bytes_per_s(self) -> float: ...
    @property
    def streams(self) -> int: ...  # SFTP channels for files of PARALLEL_MIN_BYTES and more
    @property
    def progress(self) -> Callable[[str, int, int], None]: ...


def send(fleet: Fleet, client: GrpcAgentClient, device: Device, art: LocalArtifact,
          first: pb.CheckFitResponse, incoming_dir: str, memory: int,
          options: UploadSettings) -> int:
    """Upload the blob; after a dropped link or connection, wait (exponential backoff) and
    resume where the device's partial file ends. Returns bytes actually sent."""
    sent = 0
    fit = first
    for attempt in range(options.retries + 1):
        try:
            if attempt:
                fit = client.check_fit(art.sha256, art.size_bytes, memory)
            if fit.already_held:
                return sent
            def progress(done: int, total: int) -> None:
                options.progress(device.name, done, total)

            ssh = fleet.transfer.connect(fleet.ssh_target(device))
            try:
                if options.streams > 1 and art.size_bytes >= PARALLEL_MIN_BYTES:
                    # each range resumes from the device's own .ranges record
                    return sent + push_ranges(
                        ssh, art.path, incoming_dir, art.sha256, options.streams,
                        fleet.transfer.stall_timeout_s, progress, options.limit_bytes_per_s)
                resume = 0
                if 0 < fit.staged_bytes <= art.size_bytes and (
                        sha256_prefix(art.path, fit.staged_bytes) == fit.staged_sha256):
                    resume = fit.staged_bytes  # the device's partial upload is our prefix
                return sent + fleet.transfer.push(
                    ssh, art.path, incoming_dir, art.sha256, resume_from=resume,
                    progress=progress, limit_bytes_per_s=options.limit_bytes_per_s)
            finally:
                ssh.close()
        except Unreachable as exc:  # includes TransferInterrupted; host-key errors are not
            sent += exc.sent if isinstance(exc, TransferInterrupted) else 0
            if attempt == options.retries:
                raise
            time.sleep(options.backoff_s * 2**attempt)
    return sent
