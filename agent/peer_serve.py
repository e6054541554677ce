"""Serving a blob to a fleet peer (``edgefleet.agent.v1.Peer/ReadBlob``) and keeping peer
certificates away from everything else (``PeerGuard``).

A device serves only a blob it holds (``blobs/``) or is receiving (``incoming/<sha>`` and
``.part``, from the controller over SFTP or from its own peers), only to the peer the
controller's grant names as receiver (checked against the caller's certificate), and only when
the grant names this device among the sources. It serves only chunks it has verified: each
chunk is read and hashed against the signed chunk list right before it is sent, so a chunk
still arriving is waited for, and a chunk that does not match in a finished copy is never
sent (``DATA_LOSS``: the receiver turns to another source).

Fault injection for tests only: ``FLEET_AGENT_PEER_CORRUPT=DEVICE:CHUNK[,DEVICE:CHUNK...]``
makes the agent of DEVICE flip one byte of chunk CHUNK after verifying it (a peer that sends a
bad byte).
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
from collections.abc import Callable, Iterator
from typing import Any

import grpc

from agent.errors import AgentError, ChecksumMismatch, InvalidRequest, ManifestRejected, NotFound
from agent.peer_contract import PEER_METHOD_PREFIX, PIECE_BYTES, chunk_count, chunk_span
from agent.peer_identity import Grant, PeerIdentity, caller_peer, verify_grant
from agent.rpc import peer_pb2 as pb
from agent.rpc import peer_pb2_grpc as pb_grpc
from agent.service import _abort
from agent.store import ModelStore

log = logging.getLogger("edgefleet.agent")

POLL_S = 0.02


def peer_idle_s() -> float:
    """``FLEET_PEER_IDLE_S``: a blob that stops growing this long ends the streams reading it
    (the readers turn to another source); receivers give up after twice this without progress
    from any source."""
    return float(os.environ.get("FLEET_PEER_IDLE_S") or 30.0)


def _corrupt_points() -> set[tuple[str, int]]:
    points = set()
    for point in os.environ.get("FLEET_AGENT_PEER_CORRUPT", "").split(","):
        device, _, chunk = point.partition(":")
        if device and chunk.isdigit():
            points.add((device, int(chunk)))
    return points


# the agent's one table from errors to status codes, the kind in the trailing metadata
abort_error = _abort


class ServedFile:
    """An open copy of a blob: held (``blobs/``), finished but unverified (``incoming/<sha>``)
    or arriving (``.part``). The descriptor follows the file through its renames."""

    def __init__(self, store: ModelStore, sha256: str) -> None:
        self._finals = (store.blobs_dir / sha256, store.incoming_dir / sha256)
        for path in (*self._finals, store.incoming_dir / f"{sha256}.part"):
            try:
                self.fd = os.open(path, os.O_RDONLY)
                break
            except FileNotFoundError:
                continue
        else:
            raise NotFound(f"blob {sha256[:12]} is neither held nor arriving here")

    def close(self) -> None:
        os.close(self.fd)

    def state(self) -> tuple[int, int]:
        st = os.fstat(self.fd)
        return st.st_size, st.st_mtime_ns

    def complete(self) -> bool:
        """No longer written to: this inode is the finished upload or the stored blob."""
        ino = os.fstat(self.fd).st_ino
        for path in self._finals:
            try:
                if os.stat(path).st_ino == ino:
                    return True
            except FileNotFoundError:
                continue
        return False

    def ready(self, start: int, end: int) -> bool:
        """Bytes [start, end) have all been written: the file reaches ``end`` and has no hole
        there (a multi-channel upload is preallocated sparse)."""
        if os.fstat(self.fd).st_size < end:
            return False
        try:
            return os.lseek(self.fd, start, os.SEEK_HOLE) >= end
        except OSError:
            return True  # no SEEK_HOLE here: the hash decides

    def read(self, start: int, end: int) -> bytes:
        parts = []
        while start < end:
            block = os.pread(self.fd, end - start, start)
            if not block:
                break
            parts.append(block)
            start += len(block)
        return b"".join(parts)


class _CallerGone(Exception):
    pass


class PeerServicer(pb_grpc.PeerServicer):
    def __init__(self, store: ModelStore, identity: PeerIdentity,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.store = store
        self.identity = identity
        self._sleep = sleep
        self._corrupt = _corrupt_points()

    def ReadBlob(self, request: pb.ReadBlobRequest,
                 context: grpc.ServicerContext) -> Iterator[pb.ReadBlobChunk]:
        try:
            grant = self._authorise(request, context)
            served = ServedFile(self.store, grant.sha256)
        except AgentError as exc:
            abort_error(context, exc)
            return
        try:
            first = request.offset // grant.chunk_bytes
            for index in range(first, chunk_count(grant.size_bytes, grant.chunk_bytes)):
                start, _ = chunk_span(index, grant.size_bytes, grant.chunk_bytes)
                data = self._verified_chunk(served, grant, index, context)
                for pos in range(0, len(data), PIECE_BYTES):
                    yield pb.ReadBlobChunk(offset=start + pos, data=data[pos:pos + PIECE_BYTES])
        except AgentError as exc:
            abort_error(context, exc)
        except _CallerGone:
            return
        finally:
            served.close()

    def _authorise(self, request: pb.ReadBlobRequest, context: grpc.ServicerContext) -> Grant:
        g = request.grant
        grant = verify_grant(self.identity.pinned_keys(), g.instruction, g.signature,
                             list(g.chunk_sha256))
        caller = caller_peer(context)
        if not caller or caller != grant.receiver:
            raise ManifestRejected(f"the grant is for {grant.receiver}; the caller is "
                                   f"{caller or 'not a fleet peer'}")
        if self.identity.name not in grant.sources:
            raise ManifestRejected(f"the grant does not name {self.identity.name} as a source")
        if request.offset % grant.chunk_bytes or request.offset > grant.size_bytes:
            raise InvalidRequest(f"offset {request.offset} is not a chunk boundary of the blob")
        return grant

    def _verified_chunk(self, served: ServedFile, grant: Grant, index: int,
                        context: grpc.ServicerContext) -> bytes:
        """Chunk ``index`` once it is here and matches the signed list; waits while it is
        arriving (ends the stream when the copy stops growing for ``peer_idle_s``)."""
        start, end = chunk_span(index, grant.size_bytes, grant.chunk_bytes)
        idle = peer_idle_s()
        state = served.state()
        changed = time.monotonic()
        hashed_at: tuple[int, int] | None = None  # the file's state when a hash last failed
        while True:
            if not context.is_active():
                raise _CallerGone
            if served.ready(start, end) and hashed_at != state:
                data = served.read(start, end)
                if hashlib.sha256(data).digest() == grant.digest(index):
                    return self._maybe_corrupted(data, index)
                hashed_at = state
                if served.complete():
                    log.error("chunk %d of %s does not match the signed chunk list: not "
                              "serving it", index, grant.sha256[:12])
                    raise ChecksumMismatch(f"{self.identity.name}'s copy of chunk {index} of "
                                           f"{grant.sha256[:12]} does not match the signed "
                                           "chunk list; not serving it")
            elif served.complete() and not served.ready(start, end):
                raise ChecksumMismatch(f"{self.identity.name}'s copy of {grant.sha256[:12]} "
                                       f"ends before chunk {index}")
            now_state = served.state()
            if now_state != state:
                state, changed = now_state, time.monotonic()
            elif time.monotonic() - changed > idle:
                context.abort(grpc.StatusCode.UNAVAILABLE,
                              f"{self.identity.name} received no new bytes of "
                              f"{grant.sha256[:12]} for {idle:.0f} s (its own source stalled)")
            self._sleep(POLL_S)

    def _maybe_corrupted(self, data: bytes, index: int) -> bytes:
        if (self.identity.name, index) in self._corrupt:
            log.warning("fault injection: serving chunk %d with one byte flipped", index)
            return data[:7] + bytes([data[7] ^ 0x5A]) + data[8:]
        return data


def _refusing_peers(behaviour: Callable[..., Any], streaming: bool) -> Callable[..., Any]:
    def check(context: grpc.ServicerContext) -> None:
        if caller_peer(context):
            context.abort(grpc.StatusCode.PERMISSION_DENIED,
                          "a peer certificate may only read blobs (edgefleet.agent.v1.Peer)")

    if streaming:
        def stream(request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
            check(context)
            yield from behaviour(request, context)
        return stream

    def unary(request: Any, context: grpc.ServicerContext) -> Any:
        check(context)
        return behaviour(request, context)
    return unary


class PeerGuard(grpc.ServerInterceptor):  # type: ignore[misc]
    """Every method but the peer service refuses a peer certificate: a device may read a
    blob from another, never manage it (load, commit, reclaim its disk, fetch on its
    behalf)."""

    def intercept_service(self, continuation: Callable[[Any], Any],
                          details: grpc.HandlerCallDetails) -> Any:
        handler = continuation(details)
        if handler is None or str(details.method).startswith(PEER_METHOD_PREFIX):
            return handler
        for kind, make, streaming in _HANDLERS:
            behaviour = getattr(handler, kind)
            if behaviour is not None:
                return make(_refusing_peers(behaviour, streaming), handler.request_deserializer,
                            handler.response_serializer)
        return handler


_HANDLERS = (("unary_unary", grpc.unary_unary_rpc_method_handler, False),
             ("unary_stream", grpc.unary_stream_rpc_method_handler, True),
             ("stream_unary", grpc.stream_unary_rpc_method_handler, False),
             ("stream_stream", grpc.stream_stream_rpc_method_handler, True))
