"""The agent's behaviour, free of gRPC: store, slots of models, memory guard, telemetry.

``agent.service`` translates between protobuf and this class and nothing else. The class is
layered by responsibility: ``agent.residency`` (which models are loaded, memory, on-demand
loads), ``agent.recovery`` (trial give-up, crash restart, corruption, the watcher),
``agent.inference`` (requests by model name), and here the orders of the controller (load,
commit, abort, unload, stage) and the restore after a restart.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from agent import failpoints, preflight
from agent.adapters import adapter_memory_bytes, held_for
from agent.bandwidth import Bandwidth
from agent.contract import RevertCause
from agent.emulation import DeviceView
from agent.energy import EnergyTracker
from agent.errors import (
    AdapterMismatch,
    BlobCorrupt,
    InsufficientMemory,
    InvalidRequest,
    NoActiveModel,
    NotFound,
    NotOnTrial,
    WorkerFailed,
)
from agent.inference import Inference
from agent.limits import AgentLimits
from agent.probe import HostFacts
from agent.recovery import WATCH_INTERVAL_S
from agent.residency import Loaded, default_estimate
from agent.runtimes.base import GenerationRequest
from agent.scrub import Scrubber
from agent.store import AdapterRecord, ModelRecord, check_sha256
from agent.telemetry import AgentCounters, DeviceMonitor
from agent.workers import Worker

__all__ = ["AgentCore", "Loaded", "default_estimate"]

log = logging.getLogger("edgefleet.agent")

SMOKE_PROMPT = "Hello"
_ALIAS = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,63}")


class AgentCore(Inference):
    def __init__(
        self,
        data_dir: Path,
        view: DeviceView,
        host: HostFacts,
        on_model_change: Callable[[bool], None] = lambda ready: None,
    ) -> None:
        super().__init__(data_dir, view, host, on_model_change)
        # An emulated (lab) device never reads the host's meters, which measure the whole
        # machine: it estimates from its profile's power figures instead.
        self.energy = EnergyTracker(idle_w=view.idle_w, load_w=view.load_w,
                                    use_meters=not view.emulated)
        self.energy.start()
        self.monitor = DeviceMonitor(data_dir, self.energy, self._counters)
        self.bandwidth: Bandwidth | None = None  # the host's measured read bandwidth
        self.limits = AgentLimits()  # prompt size (agent.limits); set by the server
        self._stopping = threading.Event()
        self.scrubber = Scrubber(self.store, self._after_corruption)
        if WATCH_INTERVAL_S > 0:
            threading.Thread(target=self._watch_workers, name="worker-watch",
                             daemon=True).start()
        self.monitor.start()  # device samples, kept for the controller like requests
        self.scrubber.start()

    def check_fit(self, sha256: str, size_bytes: int, estimated_bytes: int,
                  reclaim: bool = False, name: str = "", replace_others: bool = False
                  ) -> dict[str, Any]:
        """Preflight (``agent.preflight.check_fit``). A held copy whose fingerprint changed is
        hashed first; a corrupt one is quarantined and, if it was serving, replaced by the
        previous model, so the answer says "not held" and the blob is sent again. With the
        slot's ``name``, memory is judged against what would stay resident
        (``agent.eviction``); ``replace_others``: the other slots make way."""
        estimate = estimated_bytes or default_estimate(
            ModelRecord(check_sha256(sha256), "", "", "gguf", 0, size_bytes))
        if (self.store.blobs_dir / sha256).is_file():
            try:
                self.store.trusted_blob(sha256, "check")
            except BlobCorrupt:
                self._after_corruption(sha256)
            except (OSError, NotFound):
                pass
        staying = [] if not name or replace_others else self.residents()
        return preflight.check_fit(self.store, self.view, self.memory_budget(), sha256,
                                   size_bytes, estimate, reclaim, (name, staying))

    # -- lifecycle ------------------------------------------------------------------------
    def restore(self) -> None:
        """After a restart, bring back the desired models with no controller involved: pinned
        ones first, then the most recently used, as memory allows (the rest load on their
        next request). A model still on trial is given up: its slot's previous one (or none)
        comes back instead. A model whose stored bytes changed since they were verified is
        quarantined and its slot's previous one comes back (checked the same way)."""
        self.adapters.give_up("the agent restarted while it was on trial", None)
        with self._lock:
            for slot in self.store.read_state().slots:
                if slot.trial and slot.active:
                    log.warning("restarted while %s was on trial in %s: going back to %s",
                                slot.active.sha256[:12], slot.name,
                                slot.previous.sha256[:12] if slot.previous else "no model")
                    self.store.give_up_trial(slot.name,
                                             "the agent restarted while it was on trial",
                                             RevertCause.RESTART)
            order = sorted(self.store.read_state().serving(),
                           key=lambda s: (not s.pinned, -self.last_used(s.name)))
            for slot in order:
                self._restore_slot(slot.name)

    def _restore_slot(self, name: str) -> None:
        for _ in range(2):  # the active model, then its predecessor if it was corrupt
            slot = self.store.read_state().slot(name)
            if slot is None or slot.active is None:
                return
            try:
                self._bring_up(slot, "restore", may_evict=False)
                log.info("restored model %s (%s)", name, slot.active.variant)
                return
            except InsufficientMemory as exc:
                log.info("%s not restored now (%s): it loads on its next request", name, exc)
                return
            except BlobCorrupt:
                continue  # the store moved the previous one up
            except Exception as exc:
                log.error("could not restore %s: %s", slot.active.sha256[:12], exc)
                break
        slot = self.store.read_state().slot(name)
        if slot is None or slot.previous is None:
            return
        try:
            # the active model cannot load: falling back makes the previous one the desired
            # state
            self.load(slot.previous, estimated_bytes=0, smoke_test=False, found_by="restore",
                      pinned=slot.pinned)
            log.info("restored previous model %s (%s)", name, slot.previous.variant)
        except Exception as exc:
            log.error("could not restore %s: %s", slot.previous.sha256[:12], exc)

    def load(self, record: ModelRecord, estimated_bytes: int, smoke_test: bool = True,
             activate: bool = True, trial: bool = False, trial_seconds: float = 0.0,
             found_by: str = "load", aliases: tuple[str, ...] | None = None,
             replace: bool = False, pinned: bool = False) -> float:
        """Verify, load in the slot of the record's name beside the other models (and beside
        or instead of the slot's current one), smoke-test, activate (on trial until
        ``commit`` when ``trial``; given up by itself after ``trial_seconds`` without a
        commit, when set). ``replace`` stops every other model (they come back if this load
        fails or its trial is given up). Least-recently-used models are unloaded to make room
        (``last_evicted``).

        Returns load seconds. On any failure what served before serves again.
        Raises ``BlobCorrupt`` (quarantined) when the bytes do not hash to their name,
        ``NotForThisMachine`` when the runtime refuses bytes that do, ``InsufficientMemory``
        naming what holds the memory.
        """
        check_sha256(record.sha256)
        self._check_aliases(record.name, aliases or ())
        try:
            path = self.store.verify_staged(record.sha256, found_by)
        except BlobCorrupt:
            self._after_corruption(record.sha256)  # in case those bytes are serving now
            raise
        need = estimated_bytes or default_estimate(record)
        name = record.name
        with self._lock:
            stopped = [self._stop(n, "stopped: a load replaces every model")
                       for n in list(self._resident) if replace and n != name]
            current = self._resident.get(name)
            try:
                plan = self._make_room(need, name)
            except Exception:
                self._bring_back([s for s in stopped if s])
                raise
            if current and not plan.hand_over:
                log.info("tight memory: stopping %s before loading", current.record.sha256[:12])
                self._stop(name, "stopped before its new model loads")
            try:
                worker = self._start_worker(record, path)
                failpoints.hit("load.after_worker")
                try:
                    if smoke_test:
                        _smoke(worker, record.format)
                except Exception:
                    worker.stop()
                    raise
            except Exception:
                self._bring_back([s for s in (current, *stopped)
                                  if s and s.slot not in self._resident])
                raise
            if current and plan.hand_over:
                current.worker.stop()
            self.last_swap_strategy = "hand-over" if plan.hand_over or not current \
                else "stop-then-load"
            self.last_evicted = plan.evict
            self._resident[name] = Loaded(record, worker, need, name)
            self._last_used[name] = time.time()  # a model just loaded is not the LRU one
            if activate:
                until = time.time() + trial_seconds if trial and trial_seconds > 0 else 0.0
                self.store.activate(record, trial=trial, trial_until=until, aliases=aliases,
                                    pinned=pinned, memory_bytes=estimated_bytes,
                                    replace_others=replace)
            self._notify()
            return worker.load_seconds

    def _check_aliases(self, name: str, aliases: tuple[str, ...]) -> None:
        state = self.store.read_state()
        for alias in aliases:
            if not _ALIAS.fullmatch(alias) or alias == name:
                raise InvalidRequest(f"alias {alias!r} is not a valid name for {name!r} "
                                     "(letters, digits, . _ : -; not the model's own name)")
            if state.slot(alias) is not None and alias != name:
                raise InvalidRequest(f"alias {alias!r} is the name of another model on this "
                                     "device; pick another alias")

    def _bring_back(self, stopped: list[Loaded]) -> None:
        """Restart models stopped for a load that failed (their memory is free again)."""
        for loaded in stopped:
            try:
                path = self.store.trusted_blob(loaded.record.sha256, "restore")
                self._resident[loaded.slot] = Loaded(
                    loaded.record, self._start_worker(loaded.record, path),
                    loaded.estimated_bytes, loaded.slot)
            except Exception as exc:
                log.error("could not reload %s after a failed load: %s (it loads on its next "
                          "request)", loaded.slot, exc)
        self._notify()

    def load_adapter(self, record: AdapterRecord, trial: bool = False,
                     trial_seconds: int = 0) -> float:
        """Load a LoRA adapter on its base (resident, or loaded on demand) in the base's slot
        (``agent.adapters``), given up after ``trial_seconds`` on trial unless committed;
        returns seconds."""
        check_sha256(record.sha256)
        with self._lock:
            state = self.store.read_state()
            slot = state.slot_of(record.base_sha256)
            bases = [s.active for s in state.serving() if s.active and s.active.format == "gguf"]
            if not bases:
                raise NoActiveModel("no language model is loaded to apply the adapter on; "
                                    "deploy its base first")
            if slot is None or not slot.serving or slot.active is None or \
                    slot.active.format != "gguf":
                raise AdapterMismatch(
                    f"adapter {record.name} is for the model {record.base_sha256[:12]}; the "
                    "loaded models are " + ", ".join(f"{b.name} ({b.sha256[:12]})"
                                                     for b in bases)
                    + ": deploy its base first")
            current, _ = self.ensure_resident(slot)
            held = {a.sha256 for a in held_for(slot, record.base_sha256)}
            self.last_evicted = self._room_for_adapter(
                slot.name, 0 if record.sha256 in held else adapter_memory_bytes(record.size_bytes))
            self._adapter_slot = slot.name
            try:
                return self.adapters.load(current.worker, current.record.sha256,
                                          current.estimated_bytes, record, trial,
                                          trial_seconds)
            except WorkerFailed:
                self._restart_after_crash(current)
                raise
            finally:
                self._adapter_slot = ""

    def stage(self, sha256: str) -> int:
        """Verify an uploaded blob and keep it for a later load; returns its size."""
        with self._lock:
            return self.store.stage(check_sha256(sha256))

    def commit(self, sha256: str) -> None:
        """End the trial of an active model (or of an adapter on trial)."""
        with self._lock:
            if self.adapters.on_trial(check_sha256(sha256)):
                slot = next(s for s in self.store.read_state().slots
                            if s.adapter_trial and s.adapter_trial.sha256 == sha256)
                loaded = self._resident.get(slot.name)
                self.adapters.commit(sha256, loaded.worker if loaded else None)
                return
            self.store.commit(sha256)

    def abort_trial(self, sha256: str, reason: str) -> ModelRecord | None:
        """Give up the model on trial and go back to its slot's previous one (or none);
        returns the model active in that slot afterwards (for a slot left empty: the model
        serving by default, or None)."""
        check_sha256(sha256)
        with self._lock:
            state = self.store.read_state()
            for slot in state.slots:
                if slot.adapter_trial and slot.adapter_trial.sha256 == sha256:
                    loaded = self._resident.get(slot.name)
                    self.adapters.give_up(reason or "aborted by the controller",
                                          loaded.worker if loaded else None,
                                          slot.adapter_trial.base_sha256)
                    return slot.active
            held = state.slot_of(sha256)
            if held is None or not held.trial:
                raise NotOnTrial(f"model {sha256[:12]} is not on trial here")
            state = self._give_up(held.name, reason or "aborted by the controller",
                                  RevertCause.ABORTED)
            after = state.slot(held.name)
            if after is not None and after.active is not None:
                return after.active
            # a new model given up: what serves by default now (with replace, the models it
            # held back are back), as an agent of one model answers
            return state.legacy.active

    def unload(self, sha256: str = "") -> None:
        """Stop a model and deactivate its slot (every model when ``sha256`` is empty)."""
        with self._lock:
            if not sha256:
                for name in list(self._resident):
                    self._stop(name, "unloaded")
                self.store.deactivate()
                self._notify()
                return
            slot = self.store.read_state().slot_of(sha256)
            if slot is None:
                raise NoActiveModel("that model is not loaded")
            self._stop(slot.name, "unloaded")
            self.store.deactivate(slot.name)
            self._notify()

    def _counters(self) -> AgentCounters:
        slot = self.store.read_state().default()
        return AgentCounters(self.telemetry.worker_crashes, self.telemetry.total,
                             slot.active.sha256 if slot and slot.active else "")

    def shutdown(self) -> None:
        self._stopping.set()
        self.monitor.stop()
        self.scrubber.stop()
        self.energy.stop()
        self.save_usage()
        with self._lock:
            for name in list(self._resident):
                self._stop(name, "the agent stops")


def _smoke(worker: Worker, fmt: str) -> None:
    """One token (or one inference on zeros) through the new runtime before it is active."""
    started = time.perf_counter()
    if fmt == "onnx":
        worker.call("infer", worker.call("smoke_inputs"), [])
        log.info("smoke test passed in %.3f s", time.perf_counter() - started)
        return
    for kind, _value in worker.generate(GenerationRequest(prompt=SMOKE_PROMPT, max_tokens=1)):
        if kind == "done":
            log.info("smoke test passed in %.3f s", time.perf_counter() - started)
            return
    raise WorkerFailed("smoke test produced no result")
