"""The agent's behaviour, free of gRPC: store, workers, memory guard, telemetry.

``agent.service`` translates between protobuf and this class and nothing else.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Generator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agent import failpoints, preflight
from agent.adapters import AdapterManager
from agent.bandwidth import Bandwidth
from agent.benchmark import BenchResult, run_benchmark
from agent.contract import RUNTIME_OVERHEAD_BYTES, RevertCause
from agent.emulation import MIB, DeviceView
from agent.energy import EnergyTracker
from agent.errors import (
    BlobCorrupt,
    InsufficientMemory,
    InvalidRequest,
    NoActiveModel,
    NotForThisMachine,
    NotFound,
    NotOnTrial,
    WorkerFailed,
)
from agent.limits import AgentLimits
from agent.probe import HostFacts, parse_meminfo
from agent.runtimes.base import GenerationRequest, GenerationStats
from agent.scrub import Scrubber
from agent.store import AdapterRecord, ModelRecord, ModelStore, StoreState, check_sha256
from agent.telemetry import AgentCounters, DeviceMonitor, TelemetryBuffer
from agent.workers import Worker

log = logging.getLogger("edgefleet.agent")

SMOKE_PROMPT = "Hello"
# how often an idle agent checks that its runtime worker lives; 0 disables the watcher (then
# only the next request notices a crash)
WATCH_INTERVAL_S = float(os.environ.get("FLEET_AGENT_WATCH_S", "1.0"))


@dataclass
class Loaded:
    record: ModelRecord
    worker: Worker
    estimated_bytes: int


def default_estimate(record: ModelRecord) -> int:
    """Used when the controller sent no estimate: weights + 20 % + runtime overhead."""
    return int(record.size_bytes * 1.2) + RUNTIME_OVERHEAD_BYTES


class AgentCore:
    def __init__(
        self,
        data_dir: Path,
        view: DeviceView,
        host: HostFacts,
        on_model_change: Callable[[bool], None] = lambda ready: None,
    ) -> None:
        self.data_dir = data_dir
        self.view = view
        self.host = host
        self.store = ModelStore(data_dir / "store")
        self.telemetry = TelemetryBuffer(data_dir / "requests.jsonl")
        # An emulated (lab) device never reads the host's meters, which measure the whole
        # machine: it estimates from its profile's power figures instead.
        self.energy = EnergyTracker(idle_w=view.idle_w, load_w=view.load_w,
                                    use_meters=not view.emulated)
        self.energy.start()
        self.monitor = DeviceMonitor(data_dir, self.energy, self._counters)
        self._on_model_change = on_model_change
        self._lock = threading.RLock()
        self._loaded: Loaded | None = None
        self.bandwidth: Bandwidth | None = None  # the host's measured read bandwidth
        self.last_swap_strategy = ""
        self.limits = AgentLimits()  # prompt size (agent.limits); set by the server
        self._stopping = threading.Event()
        self.scrubber = Scrubber(self.store, self._after_corruption)
        self.adapters = AdapterManager(self.store, self.memory_budget)
        if WATCH_INTERVAL_S > 0:
            threading.Thread(target=self._watch_workers, name="worker-watch",
                             daemon=True).start()
        self.monitor.start()  # device samples, kept for the controller like requests
        self.scrubber.start()

    @property
    def state_lock(self) -> threading.RLock:
        """Held while the agent changes what runs (and the store's state with it)."""
        return self._lock

    # -- memory ---------------------------------------------------------------------------
    def memory_budget(self) -> int:
        """Bytes this agent may use for models right now."""
        if self.view.emulated:
            return self.view.ram_total_bytes - self.view.reserve_bytes
        try:
            available = parse_meminfo(Path("/proc/meminfo").read_text())["MemAvailable"]
        except (OSError, KeyError):
            available = self.host.ram_available_bytes
        loaded = self._loaded
        in_use = loaded.estimated_bytes + self.adapters.bytes_for(loaded.record.sha256) \
            if loaded else 0
        return available + in_use - self.view.reserve_bytes

    def disk_free(self) -> int:
        """Free bytes at the store (within an emulated device's disk size)."""
        return preflight.disk_free(self.store, self.view)

    def check_fit(self, sha256: str, size_bytes: int, estimated_bytes: int,
                  reclaim: bool = False) -> dict[str, Any]:
        """Preflight (``agent.preflight.check_fit``). A held copy whose fingerprint changed is
        hashed first; a corrupt one is quarantined and, if it was serving, replaced by the
        previous model, so the answer says "not held" and the blob is sent again."""
        estimate = estimated_bytes or default_estimate(
            ModelRecord(check_sha256(sha256), "", "", "gguf", 0, size_bytes))
        if (self.store.blobs_dir / sha256).is_file():
            try:
                self.store.trusted_blob(sha256, "check")
            except BlobCorrupt:
                self._after_corruption(sha256)
            except (OSError, NotFound):
                pass
        return preflight.check_fit(self.store, self.view, self.memory_budget(), sha256,
                                   size_bytes, estimate, reclaim)

    # -- lifecycle ------------------------------------------------------------------------
    def restore(self) -> None:
        """After a restart, bring back the desired model with no controller involved. A model
        still on trial is given up: the previous one (or none) comes back instead. A model
        whose stored bytes changed since they were verified is quarantined and the previous
        one comes back (checked the same way)."""
        self.adapters.give_up("the agent restarted while it was on trial", None)
        state = self.store.read_state()
        if state.trial and state.active:
            log.warning("restarted while %s was on trial: going back to %s",
                        state.active.sha256[:12],
                        state.previous.sha256[:12] if state.previous else "no model")
            state = self.store.give_up_trial("the agent restarted while it was on trial",
                                             RevertCause.RESTART)
        for _ in range(2):  # the active model, then its predecessor if it was corrupt
            record = state.active
            if record is None:
                return
            try:
                self.load(record, estimated_bytes=0, smoke_test=False, activate=False,
                          found_by="restore")
                log.info("restored model %s (%s)", record.name, record.variant)
                return
            except BlobCorrupt:
                state = self.store.read_state()  # the store moved the previous one up
            except Exception as exc:
                log.error("could not restore %s: %s", record.sha256[:12], exc)
                break
        if state.previous is None:
            return
        try:
            # the active model cannot load: falling back makes the previous one the desired
            # state
            self.load(state.previous, estimated_bytes=0, smoke_test=False, found_by="restore")
            log.info("restored previous model %s (%s)", state.previous.name,
                     state.previous.variant)
        except Exception as exc:
            log.error("could not restore %s: %s", state.previous.sha256[:12], exc)

    def load(self, record: ModelRecord, estimated_bytes: int, smoke_test: bool = True,
             activate: bool = True, trial: bool = False, trial_seconds: float = 0.0,
             found_by: str = "load") -> float:
        """Verify, load beside (or instead of) the current model, smoke-test, activate (on
        trial until ``commit`` when ``trial``; given up by itself after ``trial_seconds``
        without a commit, when set).

        Returns load seconds. On any failure the previously active model stays active.
        Raises ``BlobCorrupt`` (quarantined) when the bytes do not hash to their name,
        ``NotForThisMachine`` when the runtime refuses bytes that do.
        """
        check_sha256(record.sha256)
        try:
            path = self.store.verify_staged(record.sha256, found_by)
        except BlobCorrupt:
            self._after_corruption(record.sha256)  # in case those bytes are serving now
            raise
        need = estimated_bytes or default_estimate(record)
        with self._lock:
            budget = self.memory_budget()
            current = self._loaded
            used = current.estimated_bytes if current else 0
            if need > budget:
                raise InsufficientMemory(
                    f"model needs ~{need / MIB:.0f} MiB, budget is {budget / MIB:.0f} MiB "
                    f"(RAM {self.view.ram_total_bytes / MIB:.0f} MiB less reserve "
                    f"{self.view.reserve_bytes / MIB:.0f} MiB)"
                )
            hand_over = need + used <= budget  # enough room to load beside the old one
            if current and not hand_over:
                log.info("tight memory: stopping %s before loading", current.record.sha256[:12])
                current.worker.stop()
                self._loaded = None
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
                if current and not hand_over:
                    self._reload(current.record, current.estimated_bytes)
                raise
            if current and hand_over:
                current.worker.stop()
            self.last_swap_strategy = "hand-over" if hand_over or not current else "stop-then-load"
            self._loaded = Loaded(record, worker, need)
            if activate:
                until = time.time() + trial_seconds if trial and trial_seconds > 0 else 0.0
                self.store.activate(record, trial=trial, trial_until=until)
            self._on_model_change(True)
            return worker.load_seconds

    def load_adapter(self, record: AdapterRecord, trial: bool = False,
                     trial_seconds: int = 0) -> float:
        """Load a LoRA adapter on the loaded base (``agent.adapters``); returns seconds."""
        check_sha256(record.sha256)
        with self._lock:
            current = self._loaded
            if current is None or current.record.format != "gguf":
                raise NoActiveModel("no language model is loaded to apply the adapter on; "
                                    "deploy its base first")
            try:
                return self.adapters.load(current.worker, current.record.sha256,
                                          current.estimated_bytes, record, trial,
                                          trial_seconds)
            except WorkerFailed:
                self._restart_after_crash(current)
                raise

    def stage(self, sha256: str) -> int:
        """Verify an uploaded blob and keep it for a later load; returns its size."""
        with self._lock:
            return self.store.stage(check_sha256(sha256))

    def commit(self, sha256: str) -> None:
        """End the trial of the active model (or of the adapter on trial)."""
        with self._lock:
            if self.adapters.on_trial(check_sha256(sha256)):
                loaded = self._loaded
                self.adapters.commit(sha256, loaded.worker if loaded else None)
                return
            self.store.commit(sha256)

    def abort_trial(self, sha256: str, reason: str) -> ModelRecord | None:
        """Give up the model on trial and go back to the previous one (or none); returns
        the model active afterwards."""
        check_sha256(sha256)
        with self._lock:
            state = self.store.read_state()
            if self.adapters.on_trial(sha256):
                loaded = self._loaded
                self.adapters.give_up(reason or "aborted by the controller",
                                      loaded.worker if loaded else None)
                return state.active
            if not state.trial or state.active is None or state.active.sha256 != sha256:
                raise NotOnTrial(f"model {sha256[:12]} is not on trial here")
            return self._give_up(state, reason or "aborted by the controller",
                                 RevertCause.ABORTED).active

    def _give_up(self, state: StoreState, reason: str, cause: RevertCause) -> StoreState:
        """Stop the model on trial, record it given up, bring the previous one back."""
        assert state.active is not None
        log.warning("giving up %s (%s): going back to %s", state.active.sha256[:12], reason,
                    state.previous.sha256[:12] if state.previous else "no model")
        current = self._loaded
        if current is not None:
            current.worker.stop()
            self._loaded = None
            self._on_model_change(False)
        state = self.store.give_up_trial(reason, cause)
        if state.active is not None:
            self._reload(state.active, default_estimate(state.active))
            if self._loaded:
                self._on_model_change(True)
        return state

    def trial_seconds_left(self) -> float:
        state = self.store.read_state()
        if not state.trial or not state.trial_until:
            return 0.0
        return max(0.0, state.trial_until - time.time())

    def _start_worker(self, record: ModelRecord, path: Path) -> Worker:
        """A worker on ``path``; when the runtime refuses the file, the bytes are hashed again
        so that a file corrupted at rest is reported as such (``BlobCorrupt``, quarantined),
        not as a file this device cannot run."""
        try:
            worker = Worker(record.format, path, record.n_ctx or 512, self.view.cores)
            if record.format == "gguf":
                self.adapters.attach(worker, record.sha256)
            return worker
        except NotForThisMachine as exc:
            try:
                self.store.recheck(record.sha256, "load")
            except NotFound:
                raise exc from None
            raise NotForThisMachine(f"{exc} (its bytes were verified: sha256 matches)") from exc

    def _reload(self, record: ModelRecord, estimated_bytes: int) -> None:
        try:
            path = self.store.trusted_blob(record.sha256, "restore")
            worker = self._start_worker(record, path)
            self._loaded = Loaded(record, worker, estimated_bytes)
        except Exception as exc:
            log.error("could not reload previous model: %s", exc)
            self._on_model_change(False)

    def unload(self, sha256: str = "") -> None:
        with self._lock:
            current = self._loaded
            if current is None or (sha256 and current.record.sha256 != sha256):
                raise NoActiveModel("that model is not loaded")
            current.worker.stop()
            self._loaded = None
            self.store.deactivate()
            self._on_model_change(False)

    def loaded(self) -> Loaded | None:
        return self._loaded

    def _counters(self) -> AgentCounters:
        loaded = self._loaded
        return AgentCounters(self.telemetry.worker_crashes, self.telemetry.total,
                             loaded.record.sha256 if loaded else "")

    def shutdown(self) -> None:
        self._stopping.set()
        self.monitor.stop()
        self.scrubber.stop()
        self.energy.stop()
        with self._lock:
            if self._loaded:
                self._loaded.worker.stop()
                self._loaded = None

    # -- inference ------------------------------------------------------------------------
    def generate(
        self, prompt: str, max_tokens: int, temperature: float, sha256: str = ""
    ) -> Generator[tuple[str, Any], None, None]:
        return self.generate_request(
            GenerationRequest(prompt=prompt, max_tokens=max_tokens, temperature=temperature),
            sha256)

    def generate_request(
        self, request: GenerationRequest, sha256: str = "", adapter: str | None = None
    ) -> Generator[tuple[str, Any], None, None]:
        """Yield ``("text", piece)``... then ``("done", GenerationStats)``; every request,
        whichever API it came by (gRPC, OpenAI HTTP, benchmark), is recorded in telemetry
        here. Closing the generator early cancels the generation (outcome "cancelled").
        ``adapter``: a LoRA adapter by name (None: the deployed one, "": the base alone)."""
        self.limits.check_prompt(request.prompt, *(m.content for m in request.messages))
        request.check()
        current = self._loaded
        if current is None or (sha256 and current.record.sha256 != sha256):
            raise NoActiveModel("no model is loaded; deploy one first")
        if current.record.format == "gguf":
            request = self.adapters.request(request, adapter)
        stats: GenerationStats | None = None
        outcome = "error"
        joules_at_start = self.energy.joules()
        stream = current.worker.generate(request)
        try:
            for kind, value in stream:
                if kind == "done":
                    stats = value
                    stats.energy_j = self.energy.joules() - joules_at_start
                    stats.energy_meter = self.energy.meter
                    outcome = "cancelled" if value.finish_reason == "cancelled" else "ok"
                yield kind, value
        except WorkerFailed:
            self._restart_after_crash(current)
            raise
        except GeneratorExit:
            outcome = "cancelled"
            stream.close()  # cancels the runtime and drains what is in flight
            raise
        finally:
            if stats is None and outcome == "cancelled":
                stats = current.worker.cancelled_stats
            self.telemetry.append_generation(
                current.record.sha256, current.record.variant, stats or GenerationStats(),
                outcome, self.energy.meter, current.worker.peak_rss_bytes())

    def benchmark(self, runs: int, max_tokens: int, prompts: list[str]) -> BenchResult:
        """Run the prompt set ``runs`` times on the active model (agent.benchmark)."""
        current = self._loaded
        if current is None:
            raise NoActiveModel("no model is loaded; deploy one first")
        return run_benchmark(current.record, current.worker, self.generate, runs, max_tokens,
                             prompts)

    def verify_output(self, prompt: str, max_tokens: int, sha256: str = "") -> dict[str, Any]:
        """Greedy tokens and the prompt's mean log-probability on the active language model,
        and whether every logit was finite (``agent.runtimes.llama_check``)."""
        current = self._loaded
        if current is None or (sha256 and current.record.sha256 != sha256):
            raise NoActiveModel("no model is loaded; deploy one first")
        if current.record.format != "gguf":
            raise InvalidRequest("VerifyOutput checks language models (GGUF)")
        self.limits.check_prompt(prompt)
        result = self._call(current, "verify_output", prompt, max_tokens)
        return {**result, "sha256": current.record.sha256}

    def infer(self, name: str, inputs: dict[str, Any], outputs: list[str]) -> dict[str, Any]:
        """Tensor inference on the active ONNX model named ``name``."""
        return self._call(self._onnx(name), "infer", inputs, outputs)

    def model_metadata(self, name: str) -> dict[str, Any]:
        meta: dict[str, Any] = self._onnx(name).worker.call("metadata")
        return meta

    def _onnx(self, name: str) -> Loaded:
        current = self._loaded
        if current is None or current.record.name != name or current.record.format != "onnx":
            raise NotFound(f"no ONNX model named {name!r} is loaded")
        return current

    def _call(self, current: Loaded, method: str, *args: Any) -> dict[str, Any]:
        """``method`` on the worker of ``current``; a worker that died is restarted."""
        try:
            result: dict[str, Any] = current.worker.call(method, *args)
        except WorkerFailed:
            self._restart_after_crash(current)
            raise
        return result

    def _watch_workers(self) -> None:
        """Notice a dead runtime worker while nobody asks (an OOM kill at night), so the model
        is back, or a model on trial given up, before the next request; and give up a model
        whose trial deadline passed without a commit."""
        while not self._stopping.wait(WATCH_INTERVAL_S):
            current = self._loaded
            if current is not None and not current.worker.alive:
                self._restart_after_crash(current)
            self._expire_trial()
            with self._lock:  # an adapter's trial deadline (agent.adapters)
                self.adapters.expire(self._loaded.worker if self._loaded else None)
            self._check_pinned()

    def _expire_trial(self) -> None:
        with self._lock:
            state = self.store.read_state()
            if state.trial and state.trial_until and time.time() >= state.trial_until:
                self._give_up(state, "its trial deadline passed without a commit",
                              RevertCause.DEADLINE)

    def _check_pinned(self) -> None:
        """A cheap stat of the active, previous and staged blobs against their fingerprints;
        one that changed is hashed again, and quarantined if its bytes changed."""
        for sha in sorted(self.store.read_state().pinned):
            path = self.store.blobs_dir / sha
            try:
                if not path.is_file() or self.store.ledger.trusted(sha, path):
                    continue
                self.store.recheck(sha, "watch", stop=self._stopping.is_set)
            except BlobCorrupt:
                self._after_corruption(sha)
            except (OSError, NotFound, InterruptedError):
                continue  # replaced or collected meanwhile

    def _after_corruption(self, sha256: str) -> None:
        """The store quarantined ``sha256`` (and moved its state on): if that model is the one
        running, its corrupt bytes stop serving and the state's new active model (the
        previous one, or none) is loaded."""
        with self._lock:
            current = self._loaded
            if current is None or current.record.sha256 != sha256:
                return
            log.error("the running model's bytes (%s) are corrupt: stopping it", sha256[:12])
            current.worker.stop()
            self._loaded = None
            self._on_model_change(False)
            state = self.store.read_state()
            if state.active is not None:
                self._reload(state.active, default_estimate(state.active))
                if self._loaded:
                    self._on_model_change(True)

    def _restart_after_crash(self, crashed: Loaded) -> None:
        """Once per crashed worker, whoever noticed first (a request or the watcher)."""
        with self._lock:
            if self._loaded is not crashed:
                return  # already handled, or the model was swapped or unloaded meanwhile
            self.telemetry.worker_crashes += 1
            self._loaded = None
            self._on_model_change(False)
            self.adapters.give_up("the runtime worker crashed while it was on trial", None)
            state = self.store.read_state()
            if state.trial and state.active and state.active.sha256 == crashed.record.sha256:
                log.error("runtime worker for %s crashed on trial; going back to %s",
                          crashed.record.sha256[:12],
                          state.previous.sha256[:12] if state.previous else "no model")
                state = self.store.give_up_trial("its runtime worker crashed while on trial",
                                                 RevertCause.CRASH)
                if state.active is None:
                    return
                self._reload(state.active, default_estimate(state.active))
            else:
                log.error("runtime worker for %s crashed; restarting it",
                          crashed.record.sha256[:12])
                self._reload(crashed.record, crashed.estimated_bytes)
            if self._loaded:
                self._on_model_change(True)


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
