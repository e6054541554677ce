"""Uploads of one artifact to one device: resumable, retried with backoff, over one SFTP
stream or several channels for large files.

Every attempt asks the device first (``CheckFit``): is the blob held now, and does what is
left fit what is really on its disk? Offsets and byte counts are what the device
acknowledged, never what was merely handed to the link.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from agent.rpc import agent_pb2 as pb
from controller import settings
from controller.adapters.agent_client import GrpcAgentClient
from controller.adapters.ssh import sha256_prefix
from controller.adapters.ssh_parallel import push_ranges
from controller.adapters.tables import Device
from controller.artifacts import LocalArtifact
from controller.errors import DeviceError, TransferInterrupted, Unreachable, UploadRefused
from controller.services.context import Fleet

PARALLEL_MIN_BYTES = 64 * 1024 * 1024  # the default of settings.parallel_min_bytes()


class UploadSettings(Protocol):
    @property
    def retries(self) -> int: ...  # resumed retries after a dropped link
    @property
    def backoff_s(self) -> float: ...  # doubled after each retry
    @property
    def limit_bytes_per_s(self) -> float: ...
    @property
    def streams(self) -> int: ...  # SFTP channels for files of parallel_min_bytes and more
    @property
    def progress(self) -> Callable[[str, int, int], None]: ...


@dataclass
class UploadTally:
    """What one device's upload did across all its attempts, kept when it fails too."""

    acked: int = 0  # bytes the device acknowledged writing
    attempts: int = 0
    interruptions: list[str] = field(default_factory=list)  # why each attempt stopped


def send(fleet: Fleet, client: GrpcAgentClient, device: Device, art: LocalArtifact,
         first: pb.CheckFitResponse, incoming_dir: str, memory: int,
         options: UploadSettings, tally: UploadTally | None = None) -> int:
    """Upload the blob; after a dropped or stalled link, wait (exponential backoff), ask the
    device again whether it fits, and resume where the device's acknowledged bytes end.
    Returns the bytes the device acknowledged over all attempts (also kept in ``tally``).

    Raises ``TransferInterrupted`` after the last retry, ``UploadRefused`` when the device
    refuses a write (disk full...: not retried), ``DeviceError`` when a retry no longer fits.
    """
    tally = tally if tally is not None else UploadTally()
    fit = first
    resume = 0
    for attempt in range(options.retries + 1):
        try:
            if attempt:
                fit = client.check_fit(art.sha256, art.size_bytes, memory, reclaim=True)
                # memory was judged before the first byte; what changes under an upload is
                # the disk
                if not fit.already_held and fit.disk_needed_bytes > fit.disk_free_bytes:
                    raise DeviceError(f"the upload stopped ({tally.interruptions[-1]}) and "
                                      f"the device no longer has room to finish it: "
                                      f"{fit.reason}",
                                      hint="free space on the device, or deploy a smaller "
                                      "variant (`fleet plan` shows what fits)")
            if fit.already_held:
                return tally.acked

            def progress(done: int, total: int) -> None:
                options.progress(device.name, done, total)

            ssh = fleet.transfer.connect(fleet.ssh_target(device))
            tally.attempts += 1
            try:
                if options.streams > 1 and art.size_bytes >= settings.parallel_min_bytes():
                    # each range resumes from the device's own .ranges record
                    tally.acked += push_ranges(
                        ssh, art.path, incoming_dir, art.sha256, options.streams,
                        fleet.transfer.stall_timeout_s, progress, options.limit_bytes_per_s)
                    return tally.acked
                counted_to, resume = resume, 0
                if 0 < fit.staged_bytes <= art.size_bytes and fit.staged_sha256 and (
                        sha256_prefix(art.path, fit.staged_bytes) == fit.staged_sha256):
                    resume = fit.staged_bytes  # the device's partial upload is our prefix
                    # writes that landed while their acknowledgements were lost with the link
                    tally.acked += max(0, resume - counted_to) if attempt else 0
                tally.acked += fleet.transfer.push(
                    ssh, art.path, incoming_dir, art.sha256, resume_from=resume,
                    progress=progress, limit_bytes_per_s=options.limit_bytes_per_s)
                return tally.acked
            finally:
                ssh.close()
        except UploadRefused as exc:
            tally.acked += exc.sent
            raise
        except Unreachable as exc:  # includes TransferInterrupted; host-key errors are not
            if isinstance(exc, TransferInterrupted):
                tally.acked += exc.sent
                resume += exc.sent  # where this attempt's acknowledged bytes end
            tally.interruptions.append(exc.detail)
            if attempt == options.retries:
                raise
            time.sleep(options.backoff_s * 2**attempt)
    return tally.acked
