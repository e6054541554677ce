"""Fetching a blob from fleet peers (``edgefleet.agent.v1.Transfer/FetchBlob``, served by
``agent.peer_transfer``).

The controller names the sources nearest first (the device this one hangs from in the
site's chain or tree, then further up, then devices that hold the blob). The fetch:

1. resumes from this device's own partial copy: its chunks are checked against the signed
   chunk list and the copy is cut at the first that does not match;
2. reads the rest from the first source that serves it, and hashes every chunk before it
   writes it, so the copy on disk is always a verified prefix (which this device serves on
   to its own downstream while it is still arriving);
3. drops a source that sends a byte that does not match (for good), or refuses the grant;
   turns to the next source when one goes away, stalls, or has nothing yet, and tries it
   again later;
4. gives up when every source was dropped, when none can be reached at all, or when no byte
   arrived from any for twice ``FLEET_PEER_IDLE_S``: the controller then sends the rest
   itself, from where the verified prefix ends.

A finished copy is renamed ``incoming/<sha>``; like any upload it is hashed whole before it
may be staged or activated. Cancelling the call stops the fetch (the copy stays, resumable).
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

import grpc

from agent.peer_contract import chunk_count, chunk_span
from agent.peer_identity import Grant, PeerIdentity
from agent.peer_serve import peer_idle_s
from agent.rpc import peer_pb2 as pb
from agent.rpc import peer_pb2_grpc as pb_grpc
from agent.store import ModelStore

CONNECT_S = 5.0
NOT_YET_GRACE_S = 10.0  # a started source with nothing yet is waited for this long
PROGRESS_EVERY_S = 0.25
KEEPALIVE = [("grpc.keepalive_time_ms", 10_000), ("grpc.keepalive_timeout_ms", 10_000),
             ("grpc.http2.max_pings_without_data", 0), ("grpc.use_local_subchannel_pool", 1)]
# codes after which a source is not asked again in this fetch
REFUSALS = {grpc.StatusCode.PERMISSION_DENIED: "refused the grant",
            grpc.StatusCode.INVALID_ARGUMENT: "refused the request",
            grpc.StatusCode.UNIMPLEMENTED: "cannot serve peers (an older agent)",
            grpc.StatusCode.UNAUTHENTICATED: "refused our certificate",
            grpc.StatusCode.DATA_LOSS: "has a corrupt copy"}


class SourceUnreachable(Exception):
    pass


class FetchFailed(Exception):
    pass


class PeerReader(Protocol):
    def read(self, grant: pb.PeerGrant, offset: int) -> Iterator[pb.ReadBlobChunk]: ...
    def cancel(self) -> None: ...
    def close(self) -> None: ...


Connect = Callable[[pb.PeerSource], PeerReader]


class GrpcPeerReader:
    """One source's Peer service over mutual TLS with this device's peer certificate; the
    source must present the agent certificate issued to the name the controller gave."""

    def __init__(self, identity: PeerIdentity, source: pb.PeerSource,
                 connect_s: float = CONNECT_S) -> None:
        self._channel = grpc.secure_channel(
            source.address, identity.channel_credentials(),
            options=[("grpc.ssl_target_name_override", source.name), *KEEPALIVE])
        try:
            grpc.channel_ready_future(self._channel).result(timeout=connect_s)
        except grpc.FutureTimeoutError:
            self._channel.close()
            raise SourceUnreachable(f"cannot connect to its agent at {source.address} within "
                                    f"{connect_s:.0f} s") from None
        self._stub = pb_grpc.PeerStub(self._channel)
        self._call: Any = None

    def read(self, grant: pb.PeerGrant, offset: int) -> Iterator[pb.ReadBlobChunk]:
        self._call = self._stub.ReadBlob(pb.ReadBlobRequest(grant=grant, offset=offset))
        return iter(self._call)

    def cancel(self) -> None:
        if self._call is not None:
            self._call.cancel()

    def close(self) -> None:
        self._channel.close()


@dataclass
class FetchState:
    size: int
    verified: int = 0
    resumed: int = 0
    source: str = ""
    received: dict[str, int] = field(default_factory=dict)
    dropped: list[str] = field(default_factory=list)

    def snapshot(self) -> FetchState:
        return replace(self, received=dict(self.received), dropped=list(self.dropped))


@dataclass
class _Source:
    msg: pb.PeerSource
    dropped: str = ""  # why it is not asked again
    failures: int = 0
    retry_at: float = 0.0
    connect_failed: bool = False
    connected: bool = False
    last_error: str = ""
    not_yet_since: float = 0.0  # when it first said it had nothing yet (0: it has bytes)


class BlobFetch:
    """One fetch of one blob into the store's ``incoming/`` (see the module docstring)."""

    def __init__(self, store: ModelStore, grant: Grant, grant_msg: pb.PeerGrant,
                 sources: list[pb.PeerSource], connect: Connect,
                 active: Callable[[], bool] = lambda: True, give_up_s: float | None = None,
                 sleep: Callable[[float], None] = time.sleep,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.store = store
        self.grant = grant
        self.grant_msg = grant_msg
        self.sources = [_Source(s) for s in sources]
        self.connect = connect
        self.active = active
        self.give_up_s = 2 * peer_idle_s() if give_up_s is None else give_up_s
        self.sleep = sleep
        self.clock = clock
        self.state = FetchState(grant.size_bytes)
        self.part = store.incoming_dir / f"{grant.sha256}.part"
        self.final = store.incoming_dir / grant.sha256

    def run(self) -> Iterator[FetchState]:
        """Yields progress; returns when the copy is complete (renamed ``incoming/<sha>``).
        Raises ``FetchFailed`` (why no peer could deliver it), or returns early when
        ``active()`` turns false."""
        if self.store.holds(self.grant.sha256):
            self.state.verified = self.state.resumed = self.grant.size_bytes
            return
        fd = self._resume()
        try:
            yield self.state.snapshot()
            last = self.clock()
            progress_at = self.clock()
            while self.state.verified < self.grant.size_bytes:
                if not self.active():
                    return
                self._give_up_check(progress_at)
                source = self._next()
                if source is None:
                    self.sleep(0.1)
                    continue
                before = self.state.verified
                for _ in self._read_from(source, fd):
                    if self.state.verified > before:
                        progress_at = self.clock()
                    if self.clock() - last >= PROGRESS_EVERY_S:
                        last = self.clock()
                        yield self.state.snapshot()
                if self.state.verified > before:
                    progress_at = self.clock()
                yield self.state.snapshot()
                if not self.active():
                    return
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(self.part, self.final)

    # -- the copy on disk -----------------------------------------------------------------
    def _resume(self) -> int:
        """Open the partial copy and cut it after its last chunk that verifies."""
        if self.final.exists():  # a finished upload not yet staged: checked as a prefix
            os.replace(self.final, self.part)
        # a multi-channel upload's record no longer describes the copy once it is cut
        (self.store.incoming_dir / f"{self.grant.sha256}.ranges").unlink(missing_ok=True)
        fd = os.open(self.part, os.O_RDWR | os.O_CREAT, 0o644)
        size = os.fstat(fd).st_size
        verified = 0
        for index in range(chunk_count(self.grant.size_bytes, self.grant.chunk_bytes)):
            start, end = chunk_span(index, self.grant.size_bytes, self.grant.chunk_bytes)
            if end > size:
                break
            if hashlib.sha256(os.pread(fd, end - start, start)).digest() != (
                    self.grant.digest(index)):
                break
            verified = end
        os.ftruncate(fd, verified)
        self.state.verified = self.state.resumed = verified
        return fd

    # -- choosing and reading sources -----------------------------------------------------
    def _next(self) -> _Source | None:
        """The nearest source to ask now. One that has nothing yet (it has started, its
        first bytes are on the way) is waited for up to ``NOT_YET_GRACE_S`` rather than
        passed over, so the site keeps the planned shape; one that went away is passed over
        until it may be asked again."""
        now = self.clock()
        for s in self.sources:
            if s.dropped:
                continue
            if s.retry_at <= now:
                return s
            if s.not_yet_since and now - s.not_yet_since < NOT_YET_GRACE_S:
                return None
        return None

    def _give_up_check(self, progress_at: float) -> None:
        live = [s for s in self.sources if not s.dropped]
        if not live:
            raise FetchFailed("every peer was dropped: " + "; ".join(self.state.dropped))
        if all(s.connect_failed and not s.connected for s in live):
            raise FetchFailed("cannot reach any peer: " + "; ".join(
                f"{s.msg.name}: {s.last_error}" for s in live))
        if self.clock() - progress_at > self.give_up_s:
            raise FetchFailed(f"no peer delivered a byte for {self.give_up_s:.0f} s: " +
                              "; ".join(f"{s.msg.name}: {s.last_error or 'nothing yet'}"
                                        for s in live))

    def _drop(self, source: _Source, why: str) -> None:
        source.dropped = why
        self.state.dropped.append(f"{source.msg.name}: {why}")

    def _later(self, source: _Source, why: str, not_yet: bool = False) -> None:
        source.failures += 1
        source.last_error = why
        if not_yet:
            source.not_yet_since = source.not_yet_since or self.clock()
            source.retry_at = self.clock() + 0.2
            return
        source.not_yet_since = 0.0
        source.retry_at = self.clock() + min(5.0, 0.5 * 2 ** (source.failures - 1))

    def _read_from(self, source: _Source, fd: int) -> Iterator[None]:
        """Stream from one source until the end, an error, or a bad chunk; yields after
        each piece."""
        try:
            reader = self.connect(source.msg)
        except SourceUnreachable as exc:
            source.connect_failed = True
            self._later(source, str(exc))
            return
        source.connected = True
        self.state.source = source.msg.name
        buffer = bytearray()
        index = self.state.verified // self.grant.chunk_bytes
        try:
            for piece in reader.read(self.grant_msg, self.state.verified):
                if piece.offset != self.state.verified + len(buffer):
                    self._drop(source, f"sent offset {piece.offset}, expected "
                               f"{self.state.verified + len(buffer)}")
                    reader.cancel()
                    return
                buffer += piece.data
                start, end = chunk_span(index, self.grant.size_bytes, self.grant.chunk_bytes)
                while len(buffer) >= end - start and start < end:
                    chunk = bytes(buffer[:end - start])
                    if hashlib.sha256(chunk).digest() != self.grant.digest(index):
                        self._drop(source, f"sent a bad chunk {index} (bytes {start}-{end} do "
                                   "not match the signed chunk list)")
                        reader.cancel()
                        return
                    os.pwrite(fd, chunk, start)
                    del buffer[:end - start]
                    self.state.verified = end
                    name = source.msg.name
                    self.state.received[name] = self.state.received.get(name, 0) + len(chunk)
                    source.failures, source.last_error, source.not_yet_since = 0, "", 0.0
                    index += 1
                    start, end = chunk_span(index, self.grant.size_bytes,
                                            self.grant.chunk_bytes)
                yield
                if not self.active():
                    reader.cancel()
                    return
            if self.state.verified < self.grant.size_bytes:
                self._later(source, "ended its stream early")
        except grpc.RpcError as exc:
            code = exc.code() if hasattr(exc, "code") else grpc.StatusCode.UNKNOWN
            detail = (exc.details() if hasattr(exc, "details") else "") or code.name
            if code in REFUSALS:
                self._drop(source, f"{REFUSALS[code]}: {detail}")
            else:  # NOT_FOUND: nothing yet; UNAVAILABLE: went away or stalled
                self._later(source, detail, not_yet=code == grpc.StatusCode.NOT_FOUND)
        finally:
            reader.close()
