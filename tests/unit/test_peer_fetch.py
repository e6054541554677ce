"""The receiving agent's fetch from peers (agent.peer_fetch.BlobFetch) on a real store, with
sources scripted in memory: resume from its own partial copy (cut at the first chunk that
does not verify), a source that sends a bad chunk dropped, a dead or stalled source passed
over, a source with nothing yet waited for, and the reasons it gives up. The wire is tested
with real agents in tests/e2e/test_fanout.py."""

from __future__ import annotations

import errno
import hashlib
import os
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from agent.peer_contract import chunk_count, chunks_sha256
from agent.peer_fetch import BlobFetch, FetchFailed, SourceUnreachable
from agent.peer_identity import Grant, PeerIdentity
from agent.peer_transfer import TransferServicer
from agent.rpc import peer_pb2 as pb
from agent.store import ModelStore

CHUNK = 4096
DATA = os.urandom(CHUNK * 9 + 1000)  # 10 chunks, the last one short
SHA = hashlib.sha256(DATA).hexdigest()
DIGESTS = tuple(hashlib.sha256(DATA[i:i + CHUNK]).digest() for i in range(0, len(DATA), CHUNK))
GRANT = Grant(SHA, len(DATA), CHUNK, DIGESTS, "me", ("p1", "p2"), "r1", 0.0)


class Code(grpc.RpcError):
    def __init__(self, code: grpc.StatusCode, details: str = "") -> None:
        self._code, self._details = code, details

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str:
        return self._details


class Source:
    """A scripted peer: serves DATA in 1000-byte pieces from the offset asked, optionally
    flipping a byte of one chunk, or failing after some chunks, or with an error."""

    def __init__(self, bad_chunk: int = -1, stop_after: int = -1,
                 error: grpc.StatusCode | None = None, errors: int = 10**6,
                 unreachable: bool = False) -> None:
        self.bad_chunk, self.stop_after = bad_chunk, stop_after
        self.error, self.errors_left = error, errors
        self.unreachable = unreachable
        self.offsets: list[int] = []

    def read(self, grant: pb.PeerGrant, offset: int) -> Iterator[pb.ReadBlobChunk]:
        self.offsets.append(offset)
        if self.error is not None and self.errors_left > 0:
            self.errors_left -= 1
            raise Code(self.error, f"scripted {self.error.name}")
        data = bytearray(DATA)
        if self.bad_chunk >= 0:
            data[self.bad_chunk * CHUNK + 5] ^= 0xFF
        end = len(DATA) if self.stop_after < 0 else min(len(DATA), self.stop_after * CHUNK)
        for pos in range(offset, end, 1000):
            yield pb.ReadBlobChunk(offset=pos, data=bytes(data[pos:min(pos + 1000, end)]))
        if end < len(DATA):
            raise Code(grpc.StatusCode.UNAVAILABLE, "the peer went away")

    def cancel(self) -> None:
        pass

    def close(self) -> None:
        pass


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t

    def sleep(self, s: float) -> None:
        self.t += s


def _fetch(store: ModelStore, sources: dict[str, Source], give_up_s: float = 60.0
           ) -> tuple[BlobFetch, list[str]]:
    clock = Clock()
    asked: list[str] = []

    def connect(source: pb.PeerSource) -> Source:
        asked.append(source.name)
        clock.t += 0.01
        peer = sources[source.name]
        if peer.unreachable:
            raise SourceUnreachable("cannot connect within 5 s")
        return peer

    fetch = BlobFetch(store, GRANT, pb.PeerGrant(),
                      [pb.PeerSource(name=n, address=f"{n}:1") for n in sources], connect,
                      give_up_s=give_up_s, sleep=clock.sleep, clock=clock)
    return fetch, asked


def _run(fetch: BlobFetch) -> None:
    for _ in fetch.run():
        pass


@pytest.fixture
def store(tmp_path: Path) -> ModelStore:
    return ModelStore(tmp_path / "store")


def _arrived(store: ModelStore) -> bytes:
    assert not (store.incoming_dir / f"{SHA}.part").exists()
    return (store.incoming_dir / SHA).read_bytes()


def test_the_whole_blob_arrives_from_the_nearest_source(store: ModelStore) -> None:
    p1, p2 = Source(), Source()
    fetch, asked = _fetch(store, {"p1": p1, "p2": p2})
    _run(fetch)
    assert _arrived(store) == DATA and asked == ["p1"] and p1.offsets == [0]
    assert fetch.state.received == {"p1": len(DATA)} and fetch.state.resumed == 0
    assert chunk_count(len(DATA), CHUNK) == len(DIGESTS) and chunks_sha256(DIGESTS)


def test_it_resumes_from_its_own_partial_copy_and_cuts_it_at_a_bad_chunk(
        store: ModelStore) -> None:
    part = store.incoming_dir / f"{SHA}.part"
    part.write_bytes(DATA[:3 * CHUNK + 100])  # three whole chunks and a torn fourth
    (store.incoming_dir / f"{SHA}.ranges").write_text("{}")  # a multi-channel record
    p1 = Source()
    fetch, _ = _fetch(store, {"p1": p1})
    _run(fetch)
    assert p1.offsets == [3 * CHUNK] and fetch.state.resumed == 3 * CHUNK
    assert _arrived(store) == DATA and not (store.incoming_dir / f"{SHA}.ranges").exists()
    # a copy whose chunk 1 went bad is cut there, not trusted
    (store.incoming_dir / SHA).unlink()
    bad = bytearray(DATA[:5 * CHUNK])
    bad[CHUNK + 1] ^= 1
    part.write_bytes(bytes(bad))
    p1 = Source()
    fetch, _ = _fetch(store, {"p1": p1})
    _run(fetch)
    assert p1.offsets == [CHUNK] and _arrived(store) == DATA


def test_a_source_that_sends_a_bad_chunk_is_dropped_for_good(store: ModelStore) -> None:
    p1, p2 = Source(bad_chunk=4), Source()
    fetch, asked = _fetch(store, {"p1": p1, "p2": p2})
    _run(fetch)
    assert _arrived(store) == DATA
    assert p2.offsets == [4 * CHUNK]  # what p1 sent well is kept
    assert fetch.state.received == {"p1": 4 * CHUNK, "p2": len(DATA) - 4 * CHUNK}
    assert fetch.state.dropped == ["p1: sent a bad chunk 4 (bytes 16384-20480 do not match "
                                   "the signed chunk list)"]
    assert asked.count("p1") == 1


def test_a_source_that_dies_mid_stream_gives_way_to_the_next_one_up(store: ModelStore) -> None:
    p1, p2 = Source(stop_after=6), Source()
    fetch, _ = _fetch(store, {"p1": p1, "p2": p2})
    _run(fetch)
    assert _arrived(store) == DATA and p2.offsets == [6 * CHUNK]
    assert fetch.state.dropped == []  # gone, not bad: it may be asked again


def test_an_unreachable_source_is_passed_over(store: ModelStore) -> None:
    fetch, asked = _fetch(store, {"p1": Source(unreachable=True), "p2": Source()})
    _run(fetch)
    assert _arrived(store) == DATA and asked == ["p1", "p2"]


def test_no_reachable_source_fails_with_each_reason(store: ModelStore) -> None:
    fetch, _ = _fetch(store, {"p1": Source(unreachable=True), "p2": Source(unreachable=True)})
    with pytest.raises(FetchFailed, match="cannot reach any peer: p1: cannot connect"):
        _run(fetch)
    assert (store.incoming_dir / f"{SHA}.part").exists()  # kept for the controller to resume


def test_every_source_dropped_fails(store: ModelStore) -> None:
    fetch, _ = _fetch(store, {"p1": Source(error=grpc.StatusCode.PERMISSION_DENIED),
                              "p2": Source(error=grpc.StatusCode.DATA_LOSS)})
    with pytest.raises(FetchFailed, match="every peer was dropped: p1: refused the grant"):
        _run(fetch)
    assert "p2: has a corrupt copy" in fetch.state.dropped[1]


def test_a_source_with_nothing_yet_is_waited_for_not_passed_over(store: ModelStore) -> None:
    p1, p2 = Source(error=grpc.StatusCode.NOT_FOUND, errors=5), Source()
    fetch, asked = _fetch(store, {"p1": p1, "p2": p2})
    _run(fetch)
    assert _arrived(store) == DATA and set(asked) == {"p1"} and len(p1.offsets) == 6


def test_a_source_with_nothing_for_long_is_passed_over_then_it_gives_up(
        store: ModelStore) -> None:
    p1, p2 = Source(error=grpc.StatusCode.NOT_FOUND), Source()
    fetch, asked = _fetch(store, {"p1": p1, "p2": p2})
    _run(fetch)
    assert _arrived(store) == DATA and asked[-1] == "p2"  # after the grace
    (store.incoming_dir / SHA).unlink()
    fetch, _ = _fetch(store, {"p1": Source(error=grpc.StatusCode.NOT_FOUND)}, give_up_s=20)
    with pytest.raises(FetchFailed, match="no peer delivered a byte for 20 s"):
        _run(fetch)


def test_a_blob_already_held_is_not_fetched(store: ModelStore) -> None:
    (store.incoming_dir / SHA).write_bytes(DATA)
    store.verify_staged(SHA)
    p1 = Source()
    fetch, asked = _fetch(store, {"p1": p1})
    _run(fetch)
    assert asked == [] and fetch.state.verified == len(DATA)


class Context:
    """What TransferServicer uses of a grpc.ServicerContext."""

    def __init__(self) -> None:
        self.aborted: tuple[grpc.StatusCode, str] | None = None

    def is_active(self) -> bool:
        return True

    def set_trailing_metadata(self, metadata: object) -> None:
        pass

    def abort(self, code: grpc.StatusCode, details: str) -> None:
        self.aborted = (code, details)
        raise RuntimeError("aborted")


def _signed_request(tmp_path: Path, receiver: str = "me") -> tuple[pb.FetchBlobRequest, bytes]:
    from controller.adapters.device_link import peer_grant
    from controller.adapters.pki import FleetPki
    from controller.core.fanout import ChunkList
    from controller.services.ports import Artifact, PeerEndpoint, PeerOrder

    pki = FleetPki(tmp_path / "pki").ensure()
    order = PeerOrder(Artifact("m", "v", "gguf", SHA, len(DATA), ""), ChunkList(CHUNK, DIGESTS),
                      receiver, (PeerEndpoint("p1", "p1:1"),), "r1")
    grant = peer_grant(order, pki.sign_manifest)
    return (pb.FetchBlobRequest(grant=grant, sources=[pb.PeerSource(name="p1", address="x")]),
            pki.signing_pub_path.read_bytes())


def _servicer(store: ModelStore, pub: bytes) -> TransferServicer:
    identity = PeerIdentity("me", b"", b"", b"", pub)
    return TransferServicer(store, identity, connect=lambda s: Source())


def test_a_full_disk_during_a_fetch_removes_the_partial_copy_and_says_so(
        store: ModelStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    request, pub = _signed_request(tmp_path)
    real = os.pwrite

    def pwrite(fd: int, data: bytes, offset: int) -> int:
        if offset >= 3 * CHUNK:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(fd, data, offset)

    monkeypatch.setattr(os, "pwrite", pwrite)
    context = Context()
    with pytest.raises(RuntimeError):
        list(_servicer(store, pub).FetchBlob(request, context))  # type: ignore[arg-type]
    assert context.aborted is not None
    code, details = context.aborted
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED and "disk filled up" in details
    assert not (store.incoming_dir / f"{SHA}.part").exists()


def test_the_servicer_fetches_with_a_signed_grant_and_refuses_anothers(
        store: ModelStore, tmp_path: Path) -> None:
    request, pub = _signed_request(tmp_path)
    progress = list(_servicer(store, pub).FetchBlob(request, Context()))  # type: ignore[arg-type]
    assert progress[-1].done and not progress[-1].failure
    assert (store.incoming_dir / SHA).read_bytes() == DATA
    other, _ = _signed_request(tmp_path, receiver="someone-else")  # same key, not for us
    context = Context()
    with pytest.raises(RuntimeError):
        list(_servicer(store, pub).FetchBlob(other, context))  # type: ignore[arg-type]
    assert context.aborted is not None and context.aborted[0] == grpc.StatusCode.PERMISSION_DENIED
