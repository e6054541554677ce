"""Which models are loaded in a worker now, and the memory they hold: the base of ``AgentCore``.

Every slot with an active model is desired state (``agent.store_state``); a slot is
**resident** when a worker runs its model. The memory guard counts every resident model (its
signed estimate plus its adapters) against the budget; to fit another one it unloads others
least-recently-used (``agent.eviction``). An unloaded model stays active and loads again on its
next request (``ensure_resident``): concurrent requests for it wait for one load, under the
agent's lock, and each reports how long it waited. When each slot was last used is kept in
``store/usage.json`` (written now and then, not on every request), so a restart brings back
the most recently used models first.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from agent import preflight
from agent.adapters import AdapterManager
from agent.contract import RUNTIME_OVERHEAD_BYTES
from agent.emulation import MIB, DeviceView
from agent.errors import InsufficientMemory, NoActiveModel, NotForThisMachine, NotFound
from agent.eviction import Resident, RoomPlan, holders, plan_room
from agent.probe import HostFacts, parse_meminfo
from agent.store import ModelRecord, ModelStore, Slot
from agent.telemetry import TelemetryBuffer
from agent.workers import Worker

log = logging.getLogger("edgefleet.agent")

BUSY_WAIT_S = 60.0  # an on-demand load waits this long for busy models to free memory


@dataclass
class Loaded:
    record: ModelRecord
    worker: Worker
    estimated_bytes: int
    slot: str = ""


def default_estimate(record: ModelRecord) -> int:
    """Used when the controller sent no estimate: weights + 20 % + runtime overhead."""
    return int(record.size_bytes * 1.2) + RUNTIME_OVERHEAD_BYTES


class SlotRuntime:
    def __init__(self, data_dir: Path, view: DeviceView, host: HostFacts,
                 on_model_change: Callable[[bool], None]) -> None:
        self.data_dir = data_dir
        self.view = view
        self.host = host
        self.store = ModelStore(data_dir / "store")
        self.telemetry = TelemetryBuffer(data_dir / "requests.jsonl")
        self._on_model_change = on_model_change
        self._lock = threading.RLock()
        self._resident: dict[str, Loaded] = {}
        self._usage_path = self.store.root / "usage.json"
        self._last_used: dict[str, float] = _read_usage(self._usage_path)
        self._usage_saved = dict(self._last_used)
        self._busy: dict[str, int] = {}
        self._busy_lock = threading.Lock()
        self._adapter_slot = ""  # the slot an adapter is being loaded in (its room)
        self.adapters = AdapterManager(self.store, self._adapter_budget)
        self.last_swap_strategy = ""
        self.last_evicted: tuple[str, ...] = ()
        # the CPUs runtime workers run on (agent.cpu_sets); empty: not pinned
        self.runtime_cpus: frozenset[int] = frozenset()

    @property
    def state_lock(self) -> threading.RLock:
        """Held while the agent changes what runs (and the store's state with it)."""
        return self._lock

    # -- memory ---------------------------------------------------------------------------
    def memory_budget(self) -> int:
        """Bytes this agent may use for models right now, all of them together."""
        if self.view.emulated:
            return self.view.ram_total_bytes - self.view.reserve_bytes
        try:
            available = parse_meminfo(Path("/proc/meminfo").read_text())["MemAvailable"]
        except (OSError, KeyError):
            available = self.host.ram_available_bytes
        return available + self.in_use() - self.view.reserve_bytes

    def memory_of(self, loaded: Loaded) -> int:
        """What the guard counts for a resident model: its estimate and its adapters."""
        extra = self.adapters.bytes_for(loaded.record.sha256) \
            if loaded.record.format == "gguf" else 0
        return loaded.estimated_bytes + extra

    def in_use(self, but: str | None = None) -> int:
        return sum(self.memory_of(x) for name, x in list(self._resident.items()) if name != but)

    def _adapter_budget(self) -> int:
        return self.memory_budget() - self.in_use(but=self._adapter_slot)

    def disk_free(self) -> int:
        """Free bytes at the store (within an emulated device's disk size)."""
        return preflight.disk_free(self.store, self.view)

    def residents(self) -> list[Resident]:
        state = self.store.read_state()
        out = []
        for name, loaded in list(self._resident.items()):
            slot = state.slot(name)
            out.append(Resident(name, self.memory_of(loaded), self._last_used.get(name, 0.0),
                                pinned=bool(slot and slot.pinned),
                                on_trial=bool(slot and slot.trial),
                                busy=self._busy.get(name, 0) > 0))
        return out

    def _make_room(self, need: int, slot: str, may_evict: bool = True) -> RoomPlan:
        """Unload what ``agent.eviction`` chooses so that ``need`` bytes fit for ``slot``
        (under the lock). Raises InsufficientMemory naming what holds the memory."""
        budget = self.memory_budget()
        if need > budget:
            raise InsufficientMemory(
                f"model needs ~{need / MIB:.0f} MiB, budget is {budget / MIB:.0f} MiB "
                f"(RAM {self.view.ram_total_bytes / MIB:.0f} MiB less reserve "
                f"{self.view.reserve_bytes / MIB:.0f} MiB)")
        residents = self.residents()
        plan = plan_room(need, budget, residents, slot)
        if plan is None or (plan.evict and not may_evict):
            held = holders(residents, slot)
            raise InsufficientMemory(
                f"model {slot} needs ~{need / MIB:.0f} MiB; the budget is "
                f"{budget / MIB:.0f} MiB and {self.in_use() / MIB:.0f} MiB are in use"
                + (f", {held}" if held else "")
                + (": unpin or unload one (fleet deploy --replace)" if held else ""))
        for name in plan.evict:
            self._stop(name, "unloaded least-recently-used to make room for " + slot)
        return plan

    def _room_for_adapter(self, slot: str, need: int) -> tuple[str, ...]:
        """Unload least-recently-used models of other slots (``agent.eviction``: never pinned,
        on trial or busy ones) so that ``need`` more bytes fit beside ``slot``'s model, which
        stays loaded (under the lock). Raises InsufficientMemory naming what holds the memory
        when they cannot (nothing is unloaded then). Returns the slots unloaded."""
        residents = self.residents()
        budget = self.memory_budget()
        plan = plan_room(need, budget, residents, slot, keep_slot=True)
        if plan is None:
            own = sum(r.memory_bytes for r in residents if r.name == slot)
            held = holders(residents, slot)
            raise InsufficientMemory(
                f"adapter needs ~{need / MIB:.0f} MiB beside {slot} (~{own / MIB:.0f} MiB with "
                f"its adapters); the budget is {budget / MIB:.0f} MiB and "
                f"{self.in_use() / MIB:.0f} MiB are in use"
                + (f", {held}: unpin or unload one (fleet deploy --replace)" if held else ""))
        evict = plan.evict
        for name in evict:
            self._stop(name, f"unloaded least-recently-used to make room for an adapter on "
                             f"{slot}")
        return evict

    def _stop(self, name: str, why: str) -> Loaded | None:
        loaded = self._resident.pop(name, None)
        if loaded is not None:
            log.info("%s (%s): %s", name, loaded.record.sha256[:12], why)
            loaded.worker.stop()
        return loaded

    def _notify(self) -> None:
        self._on_model_change(bool(self._resident))

    # -- workers --------------------------------------------------------------------------
    def _start_worker(self, record: ModelRecord, path: Path) -> Worker:
        """A worker on ``path``; when the runtime refuses the file, the bytes are hashed again
        so that a file corrupted at rest is reported as such (``BlobCorrupt``, quarantined),
        not as a file this device cannot run."""
        try:
            worker = Worker(record.format, path, record.n_ctx or 512, self.view.cores,
                            self.runtime_cpus)
            if record.format == "gguf":
                self.adapters.attach(worker, record.sha256)
            return worker
        except NotForThisMachine as exc:
            try:
                self.store.recheck(record.sha256, "load")
            except NotFound:
                raise exc from None
            raise NotForThisMachine(f"{exc} (its bytes were verified: sha256 matches)") from exc

    def _bring_up(self, slot: Slot, found_by: str, may_evict: bool = True) -> Loaded:
        """Load ``slot``'s active model in a worker (no smoke test: it served before), making
        room for it (under the lock)."""
        record = slot.active
        assert record is not None
        self._stop(slot.name, "replaced by its slot's active model")
        need = slot.memory_bytes or default_estimate(record)
        if record.format == "gguf":
            need += self.adapters.bytes_for(record.sha256)
        self._make_room(need, slot.name, may_evict)
        path = self.store.trusted_blob(record.sha256, found_by)
        loaded = Loaded(record, self._start_worker(record, path),
                        slot.memory_bytes or default_estimate(record), slot.name)
        self._resident[slot.name] = loaded
        self._last_used.setdefault(slot.name, time.time())
        self._notify()
        return loaded

    def ensure_resident(self, slot: Slot) -> tuple[Loaded, float]:
        """The worker of ``slot``'s active model, loaded on demand if it is not resident;
        and the seconds this request waited for that (0 when it was resident)."""
        assert slot.active is not None
        loaded = self._resident.get(slot.name)
        if loaded is not None and loaded.record.sha256 == slot.active.sha256:
            return loaded, 0.0
        started = time.perf_counter()
        deadline = time.monotonic() + BUSY_WAIT_S
        while True:
            with self._lock:
                loaded = self._resident.get(slot.name)
                fresh = self.store.read_state().slot(slot.name)
                if fresh is None or not fresh.serving:
                    raise NoActiveModel(f"the model {slot.name!r} is no longer active")
                assert fresh.active is not None
                if loaded is not None and loaded.record.sha256 == fresh.active.sha256:
                    return loaded, time.perf_counter() - started
                try:
                    loaded = self._bring_up(fresh, "demand")
                    log.info("loaded %s on demand in %.3f s", slot.name,
                             time.perf_counter() - started)
                    return loaded, time.perf_counter() - started
                except InsufficientMemory:
                    busy = any(r.busy for r in self.residents())
                    if not busy or time.monotonic() > deadline:
                        raise
            time.sleep(0.05)  # a busy model frees its memory once its request ends

    @contextlib.contextmanager
    def serving(self, name: str) -> Iterator[None]:
        """Marks ``name`` busy (not unloaded to make room) and used, while a request runs."""
        with self._busy_lock:
            self._busy[name] = self._busy.get(name, 0) + 1
            self._last_used[name] = time.time()
        try:
            yield
        finally:
            with self._busy_lock:
                self._busy[name] -= 1
                self._last_used[name] = time.time()

    def last_used(self, name: str) -> float:
        return self._last_used.get(name, 0.0)

    def save_usage(self) -> None:
        """Write when each slot was last used, if that changed (best effort)."""
        with self._busy_lock:
            usage = dict(self._last_used)
        if usage == self._usage_saved:
            return
        tmp = self._usage_path.with_suffix(".tmp")
        try:
            tmp.write_text(json.dumps(usage))
            os.replace(tmp, self._usage_path)
            self._usage_saved = usage
        except OSError as exc:
            log.warning("could not save model usage: %s", exc)


def _read_usage(path: Path) -> dict[str, float]:
    try:
        data = json.loads(path.read_text())
        return {str(k): float(v) for k, v in data.items()}
    except (OSError, ValueError, AttributeError, TypeError):
        return {}
