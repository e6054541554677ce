"""LoRA adapters on the loaded base model: verified, loaded beside the base in its worker
(no reload), applied per request, on trial until committed, given up like a model.

State is the store's (``StoreState.adapters``, ``adapter_default``, ``adapter_trial`` in
state.json, written atomically with the rest); the worker holds the adapters of its base,
keyed by sha256, and applies the one a request asks for (``LlamaRuntime.use_adapter``).

    request names no adapter  -> the adapter on trial, else the default one, else the base
    request names ""          -> the base alone
    request names NAME        -> that adapter of the active base (NotFound otherwise)

A trial ends by ``commit`` (it becomes the default) or is given up: by ``abort``, a restart
of the agent, or a crash of the worker; the previous default serves again, the base never
stopped serving.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING

from agent.emulation import MIB
from agent.errors import AdapterMismatch, InsufficientMemory, NotFound, WorkerFailed
from agent.runtimes.base import GenerationRequest
from agent.store import AdapterRecord, ModelStore, Slot

if TYPE_CHECKING:
    from agent.workers import Worker

log = logging.getLogger("edgefleet.agent")

# Beyond its file: the ggml context and buffer bookkeeping of one loaded adapter, and the
# larger compute graph (two extra matmuls per adapted weight). A generous bound for the
# tiny and the few-MB adapters a fleet ships; the controller's selector counts the same.
ADAPTER_OVERHEAD_BYTES = 8 * MIB
FORMAT = "lora"  # LoadModelRequest.format of an adapter


def adapter_memory_bytes(size_bytes: int) -> int:
    """What an adapter adds to its base's memory: llama.cpp reads it into its own buffers
    (never mmap), so its whole file, plus the overhead."""
    return size_bytes + ADAPTER_OVERHEAD_BYTES


def held_for(state: Slot, base_sha256: str) -> list[AdapterRecord]:
    """The adapters the store holds for a base: committed ones, then the one on trial."""
    held = [a for a in state.adapters if a.base_sha256 == base_sha256]
    if state.adapter_trial and state.adapter_trial.base_sha256 == base_sha256:
        held.append(state.adapter_trial)
    return held


def resolve(state: Slot, name: str | None) -> str:
    """The sha256 of the adapter a request runs with ("" = the base alone)."""
    trial = state.adapter_trial
    if name is None:
        if trial:
            return trial.sha256
        name = state.adapter_default
    if not name:
        return ""
    if trial and trial.name == name:
        return trial.sha256
    active = state.active.sha256 if state.active else ""
    for a in state.adapters:
        if a.name == name and a.base_sha256 == active:
            return a.sha256
    known = sorted({a.name for a in held_for(state, active)})
    raise NotFound(f"no adapter {name!r} for the active model on this device"
                   + (f"; it holds {', '.join(known)}" if known else "; it holds none"))


def with_trial(state: Slot, record: AdapterRecord) -> Slot:
    return replace(state, adapter_trial=record)


def committed(state: Slot, record: AdapterRecord) -> Slot:
    """``record`` becomes the default adapter (replacing one of the same name)."""
    kept = tuple(a for a in state.adapters if a.name != record.name)
    trial = state.adapter_trial
    return replace(state, adapters=(*kept, record), adapter_default=record.name,
                   adapter_trial=None if trial and trial.sha256 == record.sha256 else trial)


class AdapterManager:
    """Adapter operations of ``AgentCore``, under its lock."""

    def __init__(self, store: ModelStore, budget: Callable[[], int]) -> None:
        self._store = store
        self._budget = budget
        # base sha256 -> the wall-clock time its adapter on trial is given up at; in memory
        # only, as a restart gives the trial up anyway
        self._trial_until: dict[str, float] = {}

    def load(self, worker: Worker, base_sha256: str, base_bytes: int, record: AdapterRecord,
             trial: bool, trial_seconds: int = 0) -> float:
        """Verify the adapter's bytes, load it in the base's worker, smoke-test a generation
        with it, record it (on trial, given up after ``trial_seconds`` unless committed, or
        as the default). Returns the load seconds."""
        if record.base_sha256 != base_sha256:
            raise AdapterMismatch(
                f"adapter {record.name} is for the model {record.base_sha256[:12]}; the loaded "
                f"model is {base_sha256[:12] or 'none'}: deploy its base first")
        path = self._store.verify_staged(record.sha256, "load")
        state = self._store.slot_of(base_sha256)
        others = sum(adapter_memory_bytes(a.size_bytes) for a in held_for(state, base_sha256)
                     if a.sha256 != record.sha256)
        need = adapter_memory_bytes(record.size_bytes)
        budget = self._budget()
        if base_bytes + others + need > budget:
            raise InsufficientMemory(
                f"adapter needs ~{need / MIB:.0f} MiB beside its base and adapters "
                f"(~{(base_bytes + others) / MIB:.0f} MiB); budget is {budget / MIB:.0f} MiB")
        started = time.perf_counter()
        worker.call("load_adapter", record.sha256, str(path))
        try:
            _smoke(worker, record.sha256)
        except Exception:
            worker.call("drop_adapter", record.sha256)
            raise
        seconds = time.perf_counter() - started
        state = self._store.slot_of(base_sha256)  # as it is now (the scrubber may have moved it)
        self._store.write_slot(with_trial(state, record) if trial else committed(state, record))
        self._trial_until.pop(base_sha256, None)
        if trial and trial_seconds > 0:
            self._trial_until[base_sha256] = time.time() + trial_seconds
        self._unload_unheld(worker, base_sha256)
        log.info("adapter %s (%s) loaded on %s in %.3f s%s", record.name, record.sha256[:12],
                 base_sha256[:12], seconds, " (on trial)" if trial else "")
        return seconds

    def attach(self, worker: Worker, base_sha256: str) -> None:
        """A new worker of ``base_sha256`` gets the adapters held for it (a restart, a
        rollback, a crash); one that no longer loads is logged and left out."""
        for record in held_for(self._store.slot_of(base_sha256), base_sha256):
            try:
                path = self._store.trusted_blob(record.sha256, "restore")
                worker.call("load_adapter", record.sha256, str(path))
            except Exception as exc:
                log.error("adapter %s (%s) not loaded: %s", record.name, record.sha256[:12],
                          exc)

    def on_trial(self, sha256: str) -> bool:
        return self._trial_slot(sha256) is not None

    def _trial_slot(self, sha256: str) -> Slot | None:
        return next((s for s in self._store.read_state().slots
                     if s.adapter_trial and s.adapter_trial.sha256 == sha256), None)

    def commit(self, sha256: str, worker: Worker | None) -> None:
        state = self._trial_slot(sha256)
        assert state is not None and state.adapter_trial is not None
        self._store.write_slot(committed(state, state.adapter_trial))
        self._trial_until.pop(state.adapter_trial.base_sha256, None)
        if worker is not None:
            self._unload_unheld(worker, state.adapter_trial.base_sha256)

    def give_up(self, reason: str, worker: Worker | None, base_sha256: str | None = None
                ) -> AdapterRecord | None:
        """Give up the adapter on trial on ``base_sha256`` (None: on any base) if there is
        one; the previous default serves again."""
        if base_sha256 is None:
            for slot in self._store.read_state().slots:
                if slot.active and slot.adapter_trial:
                    self.give_up(reason, worker, slot.active.sha256)
            return None
        state = self._store.slot_of(base_sha256)
        trial = state.adapter_trial
        self._trial_until.pop(base_sha256, None)
        if trial is None:
            return None
        log.warning("giving up adapter %s (%s): %s", trial.name, trial.sha256[:12], reason)
        self._store.write_slot(replace(state, adapter_trial=None))
        if worker is not None:
            self._unload_unheld(worker, trial.base_sha256)
        return trial

    def seconds_left(self, base_sha256: str) -> float:
        """Until the adapter on trial on ``base_sha256`` is given up (0: none, or no
        deadline)."""
        until = self._trial_until.get(base_sha256, 0.0)
        return max(0.0, until - time.time()) if until else 0.0

    def overdue(self) -> list[str]:
        """The bases whose adapter on trial passed its deadline without a commit."""
        now = time.time()
        return [base for base, until in self._trial_until.items() if now >= until]

    def request(self, request: GenerationRequest, name: str | None, base_sha256: str
                ) -> GenerationRequest:
        """The request with the adapter it runs with resolved to a loaded one's sha256."""
        return replace(request, adapter=resolve(self._store.slot_of(base_sha256), name))

    def bytes_for(self, base_sha256: str) -> int:
        return sum(adapter_memory_bytes(a.size_bytes)
                   for a in held_for(self._store.slot_of(base_sha256), base_sha256))

    def _unload_unheld(self, worker: Worker, base_sha256: str) -> None:
        """Free, in the worker, adapters the store no longer holds (replaced, given up)."""
        held = {a.sha256 for a in held_for(self._store.slot_of(base_sha256), base_sha256)}
        try:
            for sha in worker.call("adapters")["loaded"]:
                if sha not in held:
                    worker.call("drop_adapter", sha)
        except WorkerFailed:
            pass  # the crash is noticed and handled by whoever asks next


def _smoke(worker: Worker, sha256: str) -> None:
    """Two tokens through the base with the adapter: the health gate before it serves."""
    request = GenerationRequest(prompt="Hello", max_tokens=2, adapter=sha256)
    for kind, _value in worker.generate(request):
        if kind == "done":
            return
    raise WorkerFailed("adapter smoke test produced no result")
