"""Large uploads over several SFTP channels of one SSH connection, resumable per range.

The file is preallocated as ``NAME.part``; channel k writes range k in order. Progress (how far
each range got) is saved beside it as ``NAME.ranges`` (JSON) at most every half second and
always when a channel fails, only ever behind what was written, so a resumed upload re-sends at
most a little and never skips a byte. The agent hashes the whole file before it is used.
Worth it on large files: one paramiko stream is CPU bound in Python.
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

from controller.adapters.sftp_limits import open_for_upload, write_size
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
    """Upload ``local`` to ``remote_dir/name``; returns bytes sent by this call."""
    total = local.stat().st_size
    part = posixpath.join(remote_dir, name + ".part")
    state_path = posixpath.join(remote_dir, name + ".ranges")
    ranges = _ranges(total, streams)
    lock = threading.Lock()
    control = client.open_sftp()
    try:
        offsets = _resume_points(control, part, state_path, total, ranges)
        request_size = write_size(control)
        done_before = sum(o - s for o, (s, _) in zip(offsets, ranges, strict=True))
        sent = [0] * len(ranges)
        failures: list[BaseException] = []

        def save() -> None:
            with lock:
                state = json.dumps({"total": total, "ranges": ranges, "offsets": offsets})
            with control.open(state_path + ".tmp", "w") as fh:
                fh.write(state)
            control.posix_rename(state_path + ".tmp", state_path)

        def run(k: int) -> None:
            start, end = ranges[k]
            try:
                sftp = client.open_sftp()
                channel = sftp.get_channel()
                if channel is not None:
                    channel.settimeout(stall_timeout_s)
                began = time.monotonic()
                with local.open("rb") as src, \
                        open_for_upload(sftp, part, "r+b", request_size) as dst:
                    src.seek(offsets[k])
                    dst.seek(offsets[k])
                    while offsets[k] < end:
                        block = src.read(min(CHUNK, end - offsets[k]))
                        dst.write(block)
                        dst.flush()  # acknowledged by the server before it counts as done
                        with lock:
                            offsets[k] += len(block)
                            sent[k] += len(block)
                        if progress:
                            progress(done_before + sum(sent), total)
                        if limit_bytes_per_s:
                            ahead = sent[k] / (limit_bytes_per_s / len(ranges)) - (
                                time.monotonic() - began)
                            if ahead > 0:
                                time.sleep(ahead)
                sftp.close()
            except LINK_ERRORS as exc:
                failures.append(exc)

        threads = [threading.Thread(target=run, args=(k,), daemon=True)
                   for k in range(len(ranges))]
        for t in threads:
            t.start()
        last_save = time.monotonic()
        while any(t.is_alive() for t in threads):
            time.sleep(0.05)
            if time.monotonic() - last_save > SAVE_EVERY_S:
                with contextlib.suppress(*LINK_ERRORS):
                    save()  # a failure here is reported by the channels themselves
                last_save = time.monotonic()
        if failures:
            with contextlib.suppress(*LINK_ERRORS):
                save()
            raise TransferInterrupted(
                f"upload to {remote_dir} interrupted after {done_before + sum(sent)} of "
                f"{total} bytes ({failures[0]})",
                hint="re-run the deploy: it resumes each range where it stopped",
                sent=sum(sent))
        control.posix_rename(part, posixpath.join(remote_dir, name))
        with contextlib.suppress(FileNotFoundError):  # a quick upload never saved its state
            control.remove(state_path)
        return sum(sent)
    except LINK_ERRORS as exc:
        raise TransferInterrupted(f"upload to {remote_dir} failed ({exc})",
                                  hint="re-run the deploy: it resumes", sent=0) from exc
    finally:
        control.close()


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
