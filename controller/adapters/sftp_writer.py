"""Pipelined SFTP writes whose every reply is read, and a stall watch over a whole connection.

paramiko's ``SFTPFile`` in pipelined mode files each write's reply under no owner: a reply that
arrives while it waits for something else is dropped unread, and ``close()`` does not wait for
the writes still in flight. A refused write (disk full, permission, quota) is then never seen,
and the bytes "sent" are only bytes handed to the socket. ``AckedWriter`` keeps a bounded
window of writes in flight (pipelined, as fast as paramiko's), reads every reply, and says how
far the file is *acknowledged*: the offset below which the server confirmed every write. Only
that offset is ever recorded as sent or used to resume.

OpenSSH's sftp-server answers a failed ``pwrite`` with ``SSH_FX_FAILURE`` whatever the errno
(ENOSPC, EDQUOT and EIO look alike), so a refusal is classified with the file system's free
space (``statvfs@openssh.com``): none left is a full disk.
"""

from __future__ import annotations

import contextlib
import threading
import time
from types import TracebackType

import paramiko
from paramiko.sftp import CMD_EXTENDED, CMD_EXTENDED_REPLY, CMD_STATUS, CMD_WRITE, int64

from controller.errors import UploadRefused

SFTP_OK = 0
STATUS_NAMES = {1: "SSH_FX_EOF", 2: "SSH_FX_NO_SUCH_FILE", 3: "SSH_FX_PERMISSION_DENIED",
                4: "SSH_FX_FAILURE", 5: "SSH_FX_BAD_MESSAGE", 6: "SSH_FX_NO_CONNECTION",
                7: "SSH_FX_CONNECTION_LOST", 8: "SSH_FX_OP_UNSUPPORTED"}
WINDOW_BYTES = 4 * 1024 * 1024  # writes in flight per stream (two SSH windows of OpenSSH)
MIB = 1024 * 1024


class WriteRefused(Exception):
    """The server answered a write with an error status."""

    def __init__(self, code: int, text: str, offset: int) -> None:
        super().__init__(f"{STATUS_NAMES.get(code, f'status {code}')}: {text or 'no text'}")
        self.code = code
        self.text = text
        self.offset = offset


class AckedWriter:
    """Sequential pipelined writes to one remote file from ``start`` on.

    ``acked`` is the offset up to which every write was confirmed. ``write`` raises
    ``WriteRefused`` once a reply says a write failed; link errors propagate as paramiko's.
    """

    def __init__(self, sftp: paramiko.SFTPClient, path: str, mode: str, request_size: int,
                 start: int = 0, watch: StallWatch | None = None,
                 window_bytes: int = WINDOW_BYTES) -> None:
        self._sftp = sftp
        self._file = sftp.open(path, mode)
        self._request_size = request_size
        self._window = max(window_bytes, request_size)
        self._pending: dict[int, tuple[int, int]] = {}  # request id -> (offset, length)
        self._sent_at: dict[int, float] = {}
        self._last_ack = time.monotonic()
        self._in_flight = 0
        self._refused: WriteRefused | None = None
        self.position = start  # end of what was handed to the link
        self.wire_bytes = 0
        # when the writes in flight started to wait for an answer (None: nothing in flight);
        # read by the stall watch from its own thread, so always replaced whole
        self.waiting_since: float | None = None
        if watch is not None:
            watch.track(self)

    @property
    def acked(self) -> int:
        low = min((o for o, _ in self._pending.values()), default=self.position)
        if self._refused is not None:
            low = min(low, self._refused.offset)
        return low

    def write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            self._raise_refusal()
            while self._in_flight + self._request_size > self._window:
                self._read_reply()
                self._raise_refusal()
            chunk = bytes(view[: self._request_size])
            num = self._sftp._async_request(  # type: ignore[attr-defined]
                self, CMD_WRITE, self._file.handle, int64(self.position), chunk)
            self._pending[num] = (self.position, len(chunk))
            self._sent_at[num] = time.monotonic()
            self._in_flight += len(chunk)
            self.position += len(chunk)
            self.wire_bytes += len(chunk)
            view = view[len(chunk):]
            self._update_waiting()
            # read what has arrived without waiting: acknowledgements stay fresh
            channel = self._sftp.get_channel()
            while self._pending and channel is not None and channel.recv_ready():
                self._read_reply()
        self._raise_refusal()

    def drain(self) -> None:
        """Wait for every reply; raise the first refusal."""
        while self._pending:
            self._read_reply()
        self._raise_refusal()

    def close(self) -> None:
        """Every write acknowledged, then the handle closed (its status read too)."""
        self.drain()
        self._file.close()

    def abandon(self) -> None:
        """After a refusal: read what is still in flight, close, never raise."""
        with contextlib.suppress(Exception):
            while self._pending:
                self._read_reply()
            self._file.close()

    def _read_reply(self) -> None:
        # paramiko reads one packet and hands it to the owner registered for its request id
        # (this object, through _async_response)
        self._sftp._read_response()  # type: ignore[attr-defined]

    def _update_waiting(self) -> None:
        if not self._pending:
            self.waiting_since = None
            return
        # an answer that keeps coming, however slowly, is no stall
        self.waiting_since = max(self._last_ack, min(self._sent_at.values()))

    def _async_response(self, t: int, msg: paramiko.Message, num: int) -> None:
        offset, length = self._pending.pop(num, (self.position, 0))
        self._sent_at.pop(num, None)
        self._in_flight -= length
        self._last_ack = time.monotonic()
        self._update_waiting()
        code = msg.get_int() if t == CMD_STATUS else 5
        if code == SFTP_OK:
            return
        text = msg.get_text() if t == CMD_STATUS else "unexpected reply to a write"
        if self._refused is None or offset < self._refused.offset:
            self._refused = WriteRefused(code, text, offset)

    def _raise_refusal(self) -> None:
        if self._refused is not None:
            raise self._refused


def remote_free_bytes(sftp: paramiko.SFTPClient, path: str) -> int | None:
    """Free bytes (for an unprivileged user) of the file system holding ``path``, or None when
    the server has no ``statvfs@openssh.com``."""
    try:
        kind, msg = sftp._request(  # type: ignore[attr-defined]
            CMD_EXTENDED, "statvfs@openssh.com", path)
    except (OSError, paramiko.SFTPError, paramiko.SSHException, EOFError):
        return None
    if kind != CMD_EXTENDED_REPLY or msg is None:
        return None
    _bsize, frsize, _blocks, _bfree, bavail = (msg.get_int64() for _ in range(5))
    return int(frsize * bavail)


def refusal_error(sftp: paramiko.SFTPClient, exc: WriteRefused, remote_dir: str, total: int,
                  leftovers: list[str], sent: int) -> UploadRefused:
    """One line naming why the device refused a write; a full disk also gets its partial
    upload removed, so the device is not left without space."""
    free = remote_free_bytes(sftp, remote_dir)
    at = f"at {exc.offset / MIB:,.1f} of {total / MIB:,.1f} MiB"
    free_text = f"{free / MIB:,.1f} MiB free" if free is not None else "free space unknown"
    if exc.code == 3:
        return UploadRefused(
            f"permission denied writing the upload into {remote_dir} ({exc})",
            hint="the SSH user must own the agent's store: check the device's --user and the "
            "owner of that directory", cause="permission", sent=sent)
    if exc.code == 4 and free is not None and free < 2 * MIB:
        for path in leftovers:
            with contextlib.suppress(OSError, paramiko.SSHException, EOFError):
                sftp.remove(path)
        return UploadRefused(
            f"the device's disk is full: a write was refused {at} ({exc}), {free_text} in "
            f"{remote_dir}; removed the partial upload to give the space back",
            hint="free space on the device, or deploy a smaller variant (`fleet plan` shows "
            "what fits)", cause="disk-full", sent=sent)
    if exc.code == 4:
        return UploadRefused(
            f"the device refused a write {at} ({exc}) with {free_text} in {remote_dir}: a "
            "disk quota (EDQUOT) or an I/O error on the device",
            hint="check the SSH user's quota (quota -v) and the device's kernel log (dmesg)",
            cause="quota-or-io", sent=sent)
    return UploadRefused(f"the device refused a write {at} ({exc})",
                         hint="see the device's sshd log", cause="refused", sent=sent)


class StallWatch:
    """Closes an SSH transport when any tracked writer has had writes in flight with no
    answer for ``timeout_s``.

    A link that goes silent sends no RST: each channel of a multi-channel upload, and the
    control channel that records its progress, would wait for TCP. Closing the transport ends
    every call blocked on it at once; ``stalled`` then says why. A writer with nothing in
    flight (between blocks, or pausing for --bwlimit) is not waiting, so it cannot stall;
    opening channels and other requests are bounded by the channels' own timeouts
    (``channel_timeout`` of the transport is set to the same value).
    """

    def __init__(self, transport: paramiko.Transport | None, timeout_s: float) -> None:
        self._transport = transport
        self.timeout_s = timeout_s
        self._writers: list[AckedWriter] = []
        self._done = threading.Event()
        self.stalled = False
        self._thread = threading.Thread(target=self._run, name="sftp-stall-watch", daemon=True)
        if transport is not None and timeout_s > 0:
            transport.channel_timeout = timeout_s  # opening a channel over a dead link

    def track(self, writer: AckedWriter) -> None:
        self._writers.append(writer)

    def _run(self) -> None:
        tick = max(0.05, min(1.0, self.timeout_s / 4))
        while not self._done.wait(tick):
            now = time.monotonic()
            if any(since is not None and now - since > self.timeout_s
                   for since in (w.waiting_since for w in list(self._writers))):
                self.stalled = True
                if self._transport is not None:
                    with contextlib.suppress(Exception):
                        self._transport.close()
                return

    def describe(self, exc: BaseException) -> str:
        # a channel's own timeout (the same length) may notice first
        if self.stalled or isinstance(exc, TimeoutError):
            return (f"no write acknowledged for {self.timeout_s:g} s: the link is down or "
                    "stalled")
        return str(exc) or type(exc).__name__

    def __enter__(self) -> StallWatch:
        if self.timeout_s > 0:
            self._thread.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._done.set()

    def __repr__(self) -> str:  # pragma: no cover - debugging aid
        return f"StallWatch(timeout_s={self.timeout_s}, stalled={self.stalled})"
