"""One runtime worker process per loaded model.

The agent talks to a worker over a pipe. A segfault or OOM kill of the runtime ends the worker,
not the agent: the agent sees the pipe close, reports ``WorkerFailed`` and counts the crash.
Unloading is a process exit, so memory is really returned to the device.

Pipe protocol, agent -> worker: ``("generate", GenerationRequest)``, ``("call", op, args)``,
``("stop",)``. Worker -> agent: ``("ready", load_seconds)`` or ``("error", message)`` once after
start; per generation ``("started", prompt_tokens)`` if the request asked
(``announce_prefill``: the prompt is accepted, the prefill begins), ``("text", piece)``...,
then ``("done", stats_dict)``,
``("invalid", message, kind)`` (a refusal: a bad request, e.g. a prompt longer than the
context, or an adapter that is not loaded or not for this base; ``kind`` names the class)
or ``("error", message)`` (the runtime raised).

Token path: a fast model makes hundreds of tokens a second, and one pipe message, one gRPC or
HTTP message and one client wake-up per token cost the device more CPU than the tokens are
worth. So text is coalesced twice: while tokens come faster than ``stream_interval_s``, the
worker sends at most one message per interval (a held piece leaves with the next token, so it
waits about one token; a slow model's tokens always go one by one), and the agent's reader
joins the pieces that piled up while it was busy (the reader lags: the client is slow).
"""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import os
import select
import threading
import time
from collections.abc import Generator
from dataclasses import asdict
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from agent.cpu_sets import pin_process
from agent.errors import (
    AdapterMismatch,
    AgentError,
    ContextLengthExceeded,
    GenerationFailed,
    InvalidRequest,
    NotForThisMachine,
    NotFound,
    WorkerFailed,
)
from agent.runtimes.base import GenerationRequest, GenerationStats

_CTX = mp.get_context("spawn")
LOAD_TIMEOUT_S = 300.0
# Refusals that cross the pipe by class name (a bad request, an adapter that is not loaded
# or does not fit the base); any other exception in the runtime is a failure
_REFUSALS: dict[str, type[AgentError]] = {
    cls.__name__: cls for cls in (InvalidRequest, ContextLengthExceeded, NotFound,
                                  NotForThisMachine, AdapterMismatch)}


def _invalid(message: str, kind: str = "InvalidRequest") -> AgentError:
    return _REFUSALS.get(kind, InvalidRequest)(message)


def _open_runtime(fmt: str, path: Path, n_ctx: int, n_threads: int) -> Any:
    if fmt == "gguf":
        from agent.runtimes.llama import LlamaRuntime

        return LlamaRuntime(path, n_ctx=n_ctx, n_threads=n_threads)
    if fmt == "onnx":
        from agent.runtimes.onnx import OnnxRuntime

        return OnnxRuntime(path, n_threads=n_threads)
    raise NotForThisMachine(f"no runtime for format {fmt!r} on this agent")


def _call(runtime: Any, op: str, args: tuple[Any, ...]) -> Any:
    """Non-streaming operations: tensor inference and metadata (ONNX runtimes)."""
    method = getattr(runtime, op, None)
    if method is None:
        raise InvalidRequest(f"this model's runtime does not support {op}")
    return method(*args)


def _worker_main(
    conn: Connection, fmt: str, path: str, n_ctx: int, n_threads: int, cancel: Any,
    cpus: frozenset[int],
) -> None:
    started = time.perf_counter()
    try:
        pin_process(cpus)  # before the runtime starts its threads: they inherit it
        runtime = _open_runtime(fmt, Path(path), n_ctx, n_threads)
    except Exception as exc:  # report any load failure to the agent, then exit
        conn.send(("error", f"{type(exc).__name__}: {exc}"))
        return
    conn.send(("ready", time.perf_counter() - started))
    while True:
        try:
            msg = conn.recv()
        except EOFError:
            break
        if msg[0] == "stop":
            break
        if msg[0] == "call":
            try:
                conn.send(("result", _call(runtime, msg[1], msg[2])))
            except AgentError as exc:
                conn.send(("invalid", str(exc), type(exc).__name__))
            except Exception as exc:
                conn.send(("error", f"{type(exc).__name__}: {exc}"))
            continue
        if not hasattr(runtime, "generate"):
            conn.send(("invalid", "this model serves tensor inference (ModelInfer), "
                                  "not text generation", "InvalidRequest"))
            continue
        _run_generation(conn, runtime, msg[1], cancel)
    runtime.close()


class PieceBatcher:
    """While pieces come faster than ``interval`` seconds apart, let one message out per
    interval; a held piece leaves with the next one, so it waits about one token."""

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self._pending: list[str] = []
        self._last_sent = self._last_piece = -1e9

    def add(self, piece: str, now: float) -> str | None:
        """The text to send now, or None to hold it."""
        self._pending.append(piece)
        slow = now - self._last_piece >= self.interval
        self._last_piece = now
        if slow or now - self._last_sent >= self.interval:
            self._last_sent = now
            return self.rest()
        return None

    def rest(self) -> str:
        text = "".join(self._pending)
        self._pending.clear()
        return text


def _run_generation(conn: Connection, runtime: Any, request: GenerationRequest,
                    cancel: Any) -> None:
    stats = GenerationStats()
    batcher = PieceBatcher(request.stream_interval_s)

    def started(prompt_tokens: int) -> None:
        conn.send(("started", prompt_tokens))

    try:
        for piece in runtime.generate(request, cancel.is_set, stats,
                                      started if request.announce_prefill else None):
            text = batcher.add(piece, time.perf_counter())
            if text is not None:
                conn.send(("text", text))
        rest = batcher.rest()
        if rest:
            conn.send(("text", rest))
        conn.send(("done", asdict(stats)))
    except AgentError as exc:
        conn.send(("invalid", str(exc), type(exc).__name__))
    except Exception as exc:
        conn.send(("error", f"{type(exc).__name__}: {exc}"))


class _ReadyCheck:
    """Is a message waiting on the pipe? One ``poll(2)`` on a poller made once:
    ``Connection.poll(0)`` builds and registers a selector on every call (~10x the cost),
    and this runs once per message on the token path."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn
        self._poller = select.poll() if hasattr(select, "poll") else None
        if self._poller is not None:
            self._poller.register(conn.fileno(), select.POLLIN)

    def __call__(self) -> bool:
        if self._poller is None:
            return self._conn.poll(0)
        return bool(self._poller.poll(0))


class Worker:
    """A model loaded in its own process. One generation at a time."""

    def __init__(self, fmt: str, path: Path, n_ctx: int, n_threads: int,
                 cpus: frozenset[int] = frozenset()) -> None:
        self.pid = 0
        self.cancelled_stats: GenerationStats | None = None  # of the last cancelled request
        self._lock = threading.Lock()
        self._cancel = _CTX.Event()
        parent, child = _CTX.Pipe()
        self._conn = parent
        self._ready = _ReadyCheck(parent)
        self._proc = _CTX.Process(
            target=_worker_main,
            args=(child, fmt, str(path), n_ctx, n_threads, self._cancel, cpus),
            daemon=True,
            name=f"edgefleet-worker-{path.name[:12]}",
        )
        self._proc.start()
        child.close()
        self.pid = self._proc.pid or 0
        self.load_seconds = self._await_ready()

    def _await_ready(self) -> float:
        if not self._conn.poll(LOAD_TIMEOUT_S):
            self.stop()
            raise WorkerFailed(f"runtime did not load within {LOAD_TIMEOUT_S:.0f} s")
        try:
            kind, value = self._conn.recv()
        except EOFError:
            code = self._exit_code()
            raise WorkerFailed(f"runtime worker died while loading (exit {code})") from None
        if kind == "error":
            self.stop()
            raise NotForThisMachine(f"runtime refused the model: {value}")
        return float(value)

    def _exit_code(self) -> int | None:
        self._proc.join(timeout=5)
        return self._proc.exitcode

    def peak_rss_bytes(self) -> int:
        """High-water mark of the worker's resident memory (VmHWM), 0 if unknown."""
        try:
            for line in open(f"/proc/{self.pid}/status"):  # noqa: SIM115
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
        except OSError:
            pass
        return 0

    @property
    def alive(self) -> bool:
        return self._proc.is_alive()

    def cancel(self) -> None:
        self._cancel.set()

    def generate(
        self, request: GenerationRequest
    ) -> Generator[tuple[str, Any], None, None]:
        """Yield ``("started", prompt_tokens)`` first if the request announces its prefill,
        ``("text", piece)``... then ``("done", GenerationStats)``; raise
        InvalidRequest, GenerationFailed or WorkerFailed. Closing the generator early cancels
        the runtime (within a token) and drains what is in flight."""
        with self._lock:
            busy = False
            self.cancelled_stats = None
            try:
                self._cancel.clear()
                self._conn.send(("generate", request))
                busy = True
                msg: tuple[Any, ...] | None = self._conn.recv()
                first = True  # the first token goes out alone: time to first token is exact
                while True:
                    if msg is None:
                        msg = self._conn.recv()
                    if msg[0] == "started":
                        yield "started", msg[1]
                        msg = None
                        continue
                    if msg[0] != "text":
                        busy = False
                        yield self._final(msg)
                        return
                    text, msg = (msg[1], None) if first else self._join_ready(msg[1])
                    first = False
                    yield "text", text
            except (EOFError, BrokenPipeError, ConnectionResetError, OSError):
                busy = False
                code = self._exit_code()
                raise WorkerFailed(f"runtime worker crashed (exit {code})") from None
            finally:
                if busy:
                    # The consumer stopped early (client cancelled): stop the runtime and drain
                    # what is in flight so the next request starts clean.
                    self._drain()

    def _join_ready(self, text: str) -> tuple[str, tuple[Any, ...] | None]:
        """Pieces that piled up while the reader was busy go out as one; returns the joined
        text and the first non-text message read, if any."""
        parts = [text]
        while self._ready():
            msg = self._conn.recv()
            if msg[0] != "text":
                return "".join(parts), msg
            parts.append(msg[1])
        return "".join(parts), None

    @staticmethod
    def _final(msg: tuple[Any, ...]) -> tuple[str, Any]:
        kind, value = msg[0], msg[1]
        if kind == "done":
            return kind, GenerationStats(**value)
        if kind == "invalid":
            raise _invalid(value, *msg[2:])
        raise GenerationFailed(f"generation failed: {value}")

    def _drain(self, timeout_s: float = 30.0) -> None:
        self._cancel.set()
        deadline = time.monotonic() + timeout_s
        try:
            while time.monotonic() < deadline and self._conn.poll(deadline - time.monotonic()):
                msg = self._conn.recv()
                if msg[0] == "done":
                    self.cancelled_stats = GenerationStats(**msg[1])
                if msg[0] in ("done", "error", "invalid"):
                    return
        except (EOFError, OSError):
            return

    def call(self, op: str, *args: Any, timeout_s: float = 300.0) -> Any:
        """Run one non-streaming operation in the worker and return its result."""
        with self._lock:
            try:
                self._conn.send(("call", op, args))
                if not self._conn.poll(timeout_s):
                    raise GenerationFailed(f"{op} took longer than {timeout_s:.0f} s")
                msg = self._conn.recv()
            except (EOFError, BrokenPipeError, ConnectionResetError, OSError):
                code = self._exit_code()
                raise WorkerFailed(f"runtime worker crashed (exit {code})") from None
        kind, value = msg[0], msg[1]
        if kind == "invalid":
            raise _invalid(value, *msg[2:])
        if kind == "error":
            raise GenerationFailed(f"{op} failed: {value}")
        return value

    def stop(self) -> None:
        with contextlib.suppress(OSError, BrokenPipeError):
            self._conn.send(("stop",))
        self._proc.join(timeout=5)
        if self._proc.is_alive():
            self._proc.kill()
            self._proc.join(timeout=5)
        self._conn.close()

    def kill(self) -> None:
        """For fault tests and rescue: end the runtime process abruptly."""
        if self._proc.pid:
            os.kill(self._proc.pid, 9)
