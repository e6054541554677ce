"""What the agent does by itself, per slot: give up a model on trial (deadline, crash, abort),
restart a crashed worker, stop corrupt bytes, notice all that while nobody asks.

Each slot goes back on its own: a model given up in one slot leaves every other slot serving.
A load with ``replace`` on trial held the other slots back; giving it up lets them serve again
(loaded as memory allows, else on their next request).
"""

from __future__ import annotations

import logging
import os
import threading
import time

from agent.contract import RevertCause
from agent.errors import BlobCorrupt, NotFound
from agent.residency import Loaded, SlotRuntime
from agent.store import StoreState

log = logging.getLogger("edgefleet.agent")

# how often an idle agent checks that its runtime workers live; 0 disables the watcher (then
# only the next request notices a crash)
WATCH_INTERVAL_S = float(os.environ.get("FLEET_AGENT_WATCH_S", "1.0"))
USAGE_SAVE_S = 30.0


class SlotRecovery(SlotRuntime):
    _stopping: threading.Event

    def _give_up(self, name: str, reason: str, cause: RevertCause) -> StoreState:
        """Stop the model on trial in slot ``name``, record it given up, bring the slot's
        previous model back, and the slots its load held back (under the lock)."""
        state = self.store.read_state()
        slot = state.slot(name)
        assert slot is not None and slot.active is not None
        log.warning("giving up %s in %s (%s): going back to %s", slot.active.sha256[:12], name,
                    reason, slot.previous.sha256[:12] if slot.previous else "no model")
        if self._stop(name, "given up") is not None:
            self._notify()
        held_back = [s.name for s in state.slots if s.replaced_by == name]
        state = self.store.give_up_trial(name, reason, cause)
        for other in [name, *held_back]:
            back = state.slot(other)
            if back is None or not back.serving:
                continue
            try:
                self._bring_up(back, "restore", may_evict=other == name)
            except Exception as exc:
                log.error("%s not reloaded now (%s): it loads on its next request", other, exc)
        return state

    def _expire_trials(self) -> None:
        with self._lock:
            for slot in self.store.read_state().slots:
                if slot.trial and slot.trial_until and time.time() >= slot.trial_until:
                    self._give_up(slot.name, "its trial deadline passed without a commit",
                                  RevertCause.DEADLINE)

    def _expire_adapter_trials(self) -> None:
        """Give up an adapter whose trial deadline passed without a commit (agent.adapters)."""
        with self._lock:
            for base in self.adapters.overdue():
                slot = self.store.read_state().slot_of(base)
                loaded = self._resident.get(slot.name) if slot else None
                self.adapters.give_up("its trial deadline passed without a commit",
                                      loaded.worker if loaded else None, base)

    def trial_seconds_left(self, name: str | None = None) -> float:
        """Until the slot's model on trial, else the adapter on trial on its model, is given
        up (0: nothing on trial, or no deadline)."""
        state = self.store.read_state()
        slot = state.focus if name is None else state.slot(name)
        if slot is None:
            return 0.0
        if slot.trial:
            return max(0.0, slot.trial_until - time.time()) if slot.trial_until else 0.0
        if slot.adapter_trial:
            return self.adapters.seconds_left(slot.adapter_trial.base_sha256)
        return 0.0

    def _restart_after_crash(self, crashed: Loaded) -> None:
        """Once per crashed worker, whoever noticed first (a request or the watcher)."""
        with self._lock:
            if self._resident.get(crashed.slot) is not crashed:
                return  # already handled, or the model was swapped or unloaded meanwhile
            self.telemetry.worker_crashes += 1
            del self._resident[crashed.slot]
            self._notify()
            self.adapters.give_up("the runtime worker crashed while it was on trial", None,
                                  crashed.record.sha256)
            slot = self.store.read_state().slot(crashed.slot)
            if slot is None or slot.active is None:
                return
            if slot.trial and slot.active.sha256 == crashed.record.sha256:
                log.error("runtime worker for %s crashed on trial; going back to %s",
                          crashed.record.sha256[:12],
                          slot.previous.sha256[:12] if slot.previous else "no model")
                self._give_up(slot.name, "its runtime worker crashed while on trial",
                              RevertCause.CRASH)
                return
            log.error("runtime worker for %s crashed; restarting it", crashed.record.sha256[:12])
            try:
                self._bring_up(slot, "restore")
            except Exception as exc:
                log.error("could not restart %s: %s", slot.name, exc)

    def _after_corruption(self, sha256: str) -> None:
        """The store quarantined ``sha256`` (and moved its slot on): a model serving those
        bytes stops, and its slot's new active model (the previous one, or none) is loaded."""
        with self._lock:
            for name, loaded in list(self._resident.items()):
                if loaded.record.sha256 != sha256:
                    continue
                log.error("the running model's bytes (%s) are corrupt: stopping it",
                          sha256[:12])
                self._stop(name, "its bytes are corrupt")
                self._notify()
                slot = self.store.read_state().slot(name)
                if slot is not None and slot.serving:
                    try:
                        self._bring_up(slot, "restore")
                    except Exception as exc:
                        log.error("could not reload %s: %s", name, exc)

    def _watch_workers(self) -> None:
        """Notice a dead runtime worker while nobody asks (an OOM kill at night), so the model
        is back, or a model on trial given up, before the next request; give up a model whose
        trial deadline passed without a commit; save when models were last used."""
        saved = time.monotonic()
        while not self._stopping.wait(WATCH_INTERVAL_S):
            for loaded in list(self._resident.values()):
                if not loaded.worker.alive:
                    self._restart_after_crash(loaded)
            self._expire_trials()
            self._expire_adapter_trials()
            self._check_pinned()
            if time.monotonic() - saved > USAGE_SAVE_S:
                self.save_usage()
                saved = time.monotonic()

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
