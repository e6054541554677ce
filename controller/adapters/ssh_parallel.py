"""Large uploads over several SFTP channels of one SSH connection, resumable per range.

The file is preallocated as ``NAME.part``; channel k writes range k in order. Progress (how far
each range got) is saved beside it as ``NAME.ranges`` (JSON) at most every half second and
always when a channel fails, and only ever as far as the server acknowledged every write
(``AckedWriter``), so a resumed upload re-sends at most a little and never skips a byte. One
stall watch covers every channel and the control channel: when no write is acknowledged for
the stall timeout the connection is closed and the upload is interrupted (then resumed). A
refused write (disk full...) stops every channel. The agent hashes the whole file before it
is used. Worth it on large files: one paramiko stream is CPU bound in Python.
"""

from __future__ import annotations

import contextlib
import json
import posixpath
import threading
import time
from collections.abc import Callable
from pathlib import Path

import paramiko

from controller import failpoints
from controller.adapters.sftp_limits import write_size
from controller.adapters.sftp_writer import AckedWriter, StallWatch, WriteRefused, refusal_error
from controller.errors import TransferInterrupted

CHUNK = 1 << 20
# what a dropped connection raises, at any point of an SFTP transfer
LINK_ERRORS = (OSError, paramiko.SSHException, paramiko.SFTPError, EOFError, TimeoutError)
SAVE_EVERY_S = 0.5


def _ranges(total: int, streams: int) -> list[tuple[int, int]]:
    step = -(-total // streams)
    return [(k * step, min(total, (k + 1) * step)) for k in range(streams) if k * step < total]


def push_ranges(client: paramiko.SSHClient, local: Path, remote_dir: str, name: str,
                streams: int, stall_timeout_s: float,
                progress: Callable[[int, int], None] | None = None,
                limit_bytes_per_s: float = 0.0) -> int:
    """Upload ``local`` to ``remote_dir/name``; returns the bytes the device acknowledged in
    this call. Raises ``TransferInterrupted`` (resumable) or ``UploadRefused``."""
    total = local.stat().st_size
    part = posixpath.join(remote_dir, name + ".part")
    state_path = posixpath.join(remote_dir, name + ".ranges")
    ranges = _ranges(total, streams)
    lock = threading.Lock()
    done_before = 0
    offsets: list[int] = [s for s, _ in ranges]
    with StallWatch(client.get_transport(), stall_timeout_s) as watch:
        control: paramiko.SFTPClient | None = None
        try:
            control = client.open_sftp()
            control_channel = control.get_channel()
            if control_channel is not None:
                control_channel.settimeout(stall_timeout_s)
            offsets = _resume_points(control, part, state_path, total, ranges)
            done_before = sum(o - s for o, (s, _) in zip(offsets, ranges, strict=True))
            request_size = write_size(control)
            channels = _Channels(client, local, part, ranges, offsets, request_size,
                                 stall_timeout_s, watch, lock, limit_bytes_per_s)

            def save() -> None:
                with lock:
                    state = json.dumps({"total": total, "ranges": ranges,
                                        "offsets": list(offsets)})
                assert control is not None
                with control.open(state_path + ".tmp", "w") as fh:
                    fh.write(state)
                control.posix_rename(state_path + ".tmp", state_path)

            channels.start()
            last_save = time.monotonic()
            while channels.running():
                time.sleep(0.05)
                if progress:
                    progress(done_before + channels.acked(), total)
                # a crash test's kill half-way waits for no timer: the state is saved first
                half = failpoints.armed("upload.half") and \
                    (done_before + channels.acked()) * 2 >= total
                if half or time.monotonic() - last_save > SAVE_EVERY_S:
                    with contextlib.suppress(*LINK_ERRORS):
                        save()  # a failure here is reported by the channels themselves
                        if half:
                            failpoints.hit("upload.half")  # half recorded on the device
                    last_save = time.monotonic()
            sent = channels.acked()
            if channels.refused is not None:
                raise refusal_error(control, channels.refused, remote_dir, total,
                                    [part, state_path], sent)
            if channels.failures:
                with contextlib.suppress(*LINK_ERRORS):
                    save()
                raise TransferInterrupted(
                    f"upload interrupted after {done_before + sent} of {total} bytes "
                    f"acknowledged by the device ({watch.describe(channels.failures[0])})",
                    hint="re-run the deploy: it resumes each range where it stopped",
                    sent=sent)
            if progress:
                progress(total, total)
            control.posix_rename(part, posixpath.join(remote_dir, name))
            with contextlib.suppress(FileNotFoundError):  # a quick upload never saved its state
                control.remove(state_path)
            return sent
        except LINK_ERRORS as exc:
            acked = sum(o - s for o, (s, _) in zip(offsets, ranges, strict=True)) - done_before
            raise TransferInterrupted(f"upload failed ({watch.describe(exc)})",
                                      hint="re-run the deploy: it resumes",
                                      sent=max(0, acked)) from exc
        finally:
            if control is not None:
                with contextlib.suppress(Exception):
                    control.close()


class _Channels:
    """One thread per range, each with its own SFTP channel and ``AckedWriter``; ``offsets``
    (shared, under ``lock``) only ever moves to what the server acknowledged."""

    def __init__(self, client: paramiko.SSHClient, local: Path, part: str,
                 ranges: list[tuple[int, int]], offsets: list[int], request_size: int,
                 stall_timeout_s: float, watch: StallWatch, lock: threading.Lock,
                 limit_bytes_per_s: float) -> None:
        self.client = client
        self.local = local
        self.part = part
        self.ranges = ranges
        self.offsets = offsets
        self.starts = list(offsets)
        self.request_size = request_size
        self.stall_timeout_s = stall_timeout_s
        self.watch = watch
        self.lock = lock
        self.limit = limit_bytes_per_s / len(ranges) if limit_bytes_per_s else 0.0
        self.failures: list[BaseException] = []
        self.refused: WriteRefused | None = None
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self._run, args=(k,), daemon=True)
                        for k in range(len(ranges))]

    def start(self) -> None:
        for t in self.threads:
            t.start()

    def running(self) -> bool:
        return any(t.is_alive() for t in self.threads)

    def acked(self) -> int:
        with self.lock:
            return sum(o - s for o, s in zip(self.offsets, self.starts, strict=True))

    def _run(self, k: int) -> None:
        start, end = self.ranges[k]
        writer: AckedWriter | None = None

        def record() -> None:
            if writer is not None:
                with self.lock:
                    self.offsets[k] = max(self.offsets[k], writer.acked)

        try:
            sftp = self.client.open_sftp()
            channel = sftp.get_channel()
            if channel is not None:
                channel.settimeout(self.stall_timeout_s)
            began = time.monotonic()
            writer = AckedWriter(sftp, self.part, "r+b", self.request_size, self.offsets[k],
                                 self.watch)
            with self.local.open("rb") as src:
                src.seek(self.offsets[k])
                position = self.offsets[k]
                while position < end and not self.stop.is_set():
                    block = src.read(min(CHUNK, end - position))
                    writer.write(block)
                    position += len(block)
                    record()
                    if self.limit:
                        ahead = (position - self.starts[k]) / self.limit - (
                            time.monotonic() - began)
                        if ahead > 0:
                            writer.drain()  # nothing left waiting while we pause
                            record()
                            time.sleep(ahead)
            writer.close()
            record()
            sftp.close()
        except WriteRefused as exc:
            record()
            if writer is not None:
                writer.abandon()
            with self.lock:
                if self.refused is None:
                    self.refused = exc
            self.stop.set()  # the other channels would only be refused too
        except LINK_ERRORS as exc:
            record()
            self.failures.append(exc)


def _resume_points(sftp: paramiko.SFTPClient, part: str, state_path: str, total: int,
                   ranges: list[tuple[int, int]]) -> list[int]:
    """Where each range continues: from a matching saved state, else from scratch."""
    try:
        with sftp.open(state_path, "r") as fh:
            state = json.loads(fh.read())
        if state.get("total") == total and [tuple(r) for r in state["ranges"]] == ranges:
            sftp.stat(part)
            return [max(s, min(int(o), e)) for o, (s, e) in
                    zip(state["offsets"], ranges, strict=True)]
    except (OSError, ValueError, KeyError, TypeError):
        pass
    with sftp.open(part, "wb") as fh:
        fh.truncate(total)  # preallocate (sparse) so every channel can seek
    return [s for s, _ in ranges]
