"""``edgefleet.agent.v1.Transfer/FetchBlob``: the controller asks this device to fetch a blob
from the peers of its site (``agent.peer_fetch.BlobFetch`` does it), and the wiring of the
peer services into the agent's server."""

from __future__ import annotations

import errno
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import grpc

from agent.errors import AgentError, InsufficientDisk, ManifestRejected
from agent.peer_fetch import BlobFetch, Connect, FetchFailed, FetchState, GrpcPeerReader
from agent.peer_identity import PeerIdentity, verify_grant
from agent.peer_serve import abort_error
from agent.rpc import peer_pb2 as pb
from agent.rpc import peer_pb2_grpc as pb_grpc
from agent.store import ModelStore


class TransferServicer(pb_grpc.TransferServicer):
    """FetchBlob, one fetch per blob at a time: a new call for a blob stops the old one."""

    def __init__(self, store: ModelStore, identity: PeerIdentity,
                 connect: Connect | None = None) -> None:
        self.store = store
        self.identity = identity
        self.connect: Connect = connect or (lambda s: GrpcPeerReader(identity, s))
        self._lock = threading.Lock()
        self._running: dict[str, tuple[threading.Lock, threading.Event]] = {}

    @contextmanager
    def _exclusive(self, sha256: str) -> Iterator[threading.Event]:
        with self._lock:
            lock, old = self._running.setdefault(sha256, (threading.Lock(), threading.Event()))
            old.set()  # a fetch of this blob still running stops after its current piece
        if not lock.acquire(timeout=30.0):
            raise _Busy(f"an earlier fetch of {sha256[:12]} has not stopped yet")
        cancel = threading.Event()
        with self._lock:
            self._running[sha256] = (lock, cancel)
        try:
            yield cancel
        finally:
            lock.release()

    def FetchBlob(self, request: pb.FetchBlobRequest,
                  context: grpc.ServicerContext) -> Iterator[pb.FetchBlobProgress]:
        g = request.grant
        try:
            grant = verify_grant(self.identity.pinned_keys(), g.instruction, g.signature,
                                 list(g.chunk_sha256))
            if grant.receiver != self.identity.name:
                raise ManifestRejected(f"the grant is for {grant.receiver}, this device is "
                                       f"{self.identity.name}")
            unnamed = [s.name for s in request.sources if s.name not in grant.sources]
            if unnamed:
                raise ManifestRejected(f"the grant does not name {', '.join(unnamed)}")
            with self._exclusive(grant.sha256) as cancel:
                fetch = BlobFetch(self.store, grant, g, list(request.sources), self.connect,
                                  active=lambda: context.is_active() and not cancel.is_set())
                try:
                    for state in fetch.run():
                        yield _progress(state)
                except FetchFailed as exc:
                    yield _progress(fetch.state, done=True, failure=str(exc))
                    return
                except OSError as exc:
                    if exc.errno != errno.ENOSPC:
                        raise
                    # as an SFTP upload that fills the disk: the partial copy goes
                    fetch.part.unlink(missing_ok=True)
                    raise InsufficientDisk(
                        f"the device's disk filled up after {fetch.state.verified} bytes "
                        f"arrived from its peers ({exc.strerror}); removed the partial "
                        "copy") from None
                if fetch.state.verified >= grant.size_bytes:
                    yield _progress(fetch.state, done=True)
        except AgentError as exc:
            abort_error(context, exc)
        except _Busy as exc:  # not yet: the controller tries again later, never writes beside it
            context.abort(grpc.StatusCode.UNAVAILABLE, str(exc))


class _Busy(Exception):
    pass


def _progress(state: FetchState, done: bool = False, failure: str = "") -> pb.FetchBlobProgress:
    return pb.FetchBlobProgress(
        verified_bytes=state.verified, size_bytes=state.size, resumed_bytes=state.resumed,
        source=state.source,
        received=[pb.SourceBytes(name=k, bytes=v) for k, v in state.received.items()],
        dropped=state.dropped, done=done, failure=failure)


def add_peer_services(server: grpc.Server, store: ModelStore,
                      tls_dir: Path) -> PeerIdentity | None:
    """Serve ``Peer`` and ``Transfer`` when the device has a peer identity (enrolled with a
    peer certificate); returns it, or None (blobs then come from the controller only)."""
    from agent.peer_serve import PeerServicer

    identity = PeerIdentity.load(tls_dir)
    if identity is not None:
        pb_grpc.add_PeerServicer_to_server(PeerServicer(store, identity), server)
        pb_grpc.add_TransferServicer_to_server(TransferServicer(store, identity), server)
    return identity
