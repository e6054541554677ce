"""One runtime worker process per loaded model.

The agent talks to a worker over a pipe. A segfault or OOM kill of the runtime ends the worker,
not the agent: the agent sees the pipe close, reports ``WorkerFailed`` and counts the crash.
Unloading is a process exit, so memory is really returned to the device.

Pipe protocol, agent -> worker: ``("generate", prompt, max_tokens, temperature)``, ``("stop",)``.
Worker -> agent: ``("ready", load_seconds)`` or ``("error", message)`` once after start; per
generation ``("text", piece)``..., then ``("done", stats_dict)``, ``("invalid", message)`` (bad
request, e.g. a prompt longer than the context) or ``("error", message)`` (the runtime raised).
"""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import os
import threading
import time
from collections.abc import Generator
from dataclasses import asdict
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from agent.errors import GenerationFailed, InvalidRequest, NotForThisMachine, WorkerFailed
from agent.runtimes.base import GenerationStats

_CTX = mp.get_context("spawn")
LOAD_TIMEOUT_S = 300.0


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
    conn: Connection, fmt: str, path: str, n_ctx: int, n_threads: int, cancel: Any
) -> None:
    started = time.perf_counter()
    try:
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
            except InvalidRequest as exc:
                conn.send(("invalid", str(exc)))
            except Exception as exc:
                conn.send(("error", f"{type(exc).__name__}: {exc}"))
            continue
        if not hasattr(runtime, "generate"):
            conn.send(("invalid", "this model serves tensor inference (ModelInfer), "
                                  "not text generation"))
            continue
        _, prompt, max_tokens, temperature = msg
        stats = GenerationStats()
        try:
            for piece in runtime.generate(prompt, max_tokens, temperature, cancel.is_set, stats):
                conn.send(("text", piece))
            conn.send(("done", asdict(stats)))
        except InvalidRequest as exc:
            conn.send(("invalid", str(exc)))
        except Exception as exc:
            conn.send(("error", f"{type(exc).__name__}: {exc}"))
    runtime.close()


class Worker:
    """A model loaded in its own process. One generation at a time."""

    def __init__(self, fmt: str, path: Path, n_ctx: int, n_threads: int) -> None:
        self.pid = 0
        self.cancelled_stats: GenerationStats | None = None  # of the last cancelled request
        self._lock = threading.Lock()
        self._cancel = _CTX.Event()
        parent, child = _CTX.Pipe()
        self._conn = parent
        self._proc = _CTX.Process(
            target=_worker_main,
            args=(child, fmt, str(path), n_ctx, n_threads, self._cancel),
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
        self, prompt: str, max_tokens: int, temperature: float
    ) -> Generator[tuple[str, Any], None, None]:
        """Yield ``("text", piece)`` then ``("done", GenerationStats)``; raise WorkerFailed."""
        with self._lock:
            busy = False
            self.cancelled_stats = None
            try:
                self._cancel.clear()
                self._conn.send(("generate", prompt, max_tokens, temperature))
                busy = True
                while True:
                    kind, value = self._conn.recv()
                    if kind == "text":
                        yield kind, value
                    elif kind == "done":
                        busy = False
                        yield kind, GenerationStats(**value)
                        return
                    elif kind == "invalid":
                        busy = False
                        raise InvalidRequest(value)
                    else:
                        busy = False
                        raise GenerationFailed(f"generation failed: {value}")
            except (EOFError, BrokenPipeError, ConnectionResetError, OSError):
                busy = False
                code = self._exit_code()
                raise WorkerFailed(f"runtime worker crashed (exit {code})") from None
            finally:
                if busy:
                    # The consumer stopped early (client cancelled): stop the runtime and drain
                    # what is in flight so the next request starts clean.
                    self._drain()

    def _drain(self, timeout_s: float = 30.0) -> None:
        self._cancel.set()
        deadline = time.monotonic() + timeout_s
        try:
            while time.monotonic() < deadline and self._conn.poll(deadline - time.monotonic()):
                kind, value = self._conn.recv()
                if kind == "done":
                    self.cancelled_stats = GenerationStats(**value)
                if kind in ("done", "error", "invalid"):
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
                kind, value = self._conn.recv()
            except (EOFError, BrokenPipeError, ConnectionResetError, OSError):
                code = self._exit_code()
                raise WorkerFailed(f"runtime worker crashed (exit {code})") from None
        if kind == "invalid":
            raise InvalidRequest(value)
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
