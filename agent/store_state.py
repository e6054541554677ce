"""The store's desired state (``state.json``) as values, and its pure transitions.

A device holds one **slot** per model name: the slot's active model, the previous one it goes
back to (rollback), whether the active one is on trial, the aliases requests may use for it,
whether it is pinned (never unloaded to make room), the signed memory estimate and the LoRA
adapters held for its models. A new variant of a name replaces the old one in that name's slot;
another name gets a slot of its own, beside the others.

    state.json  {"version": 2, "current": NAME, "staged": SHA, "manifest_seq": N,
                 "slots": [{"name": ..., "active": {...}, "previous": {...}, "trial": ...,
                            "aliases": [...], "pinned": ..., ...}, ...],
                 "active": ..., "previous": ..., "trial": ...   <- the current slot, as
                                                                  agents before slots wrote it}

``current`` is the slot of the most recent load: the single-valued views (``active``,
``previous``, ``trial``...) describe it, which is what an older controller reads and what an
older agent finds in the top-level keys after a downgrade. A state.json without ``slots`` (an
agent upgraded in the field) reads as one slot.

A load with ``replace`` on trial holds the other slots back (``replaced_by``) instead of
dropping them: committed, they are dropped; given up, they serve again. Aliases a load on trial
took from other slots go back to them the same way.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, replace
from typing import Any

from agent.contract import RevertCause
from agent.errors import InvalidRequest

_SHA256 = re.compile(r"[0-9a-f]{64}")
STATE_VERSION = 2


def check_sha256(value: str) -> str:
    if not _SHA256.fullmatch(value):
        raise InvalidRequest(f"not a sha256 hex digest: {value[:80]!r}")
    return value


@dataclass(frozen=True)
class ModelRecord:
    """What the store remembers about a model it can activate."""

    sha256: str
    name: str
    variant: str
    format: str
    n_ctx: int
    size_bytes: int

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelRecord:
        return cls(
            sha256=check_sha256(str(data["sha256"])),
            name=str(data.get("name", "")),
            variant=str(data.get("variant", "")),
            format=str(data.get("format", "gguf")),
            n_ctx=int(data.get("n_ctx", 0)),
            size_bytes=int(data.get("size_bytes", 0)),
        )


@dataclass(frozen=True)
class AdapterRecord:
    """A LoRA adapter the store holds for a base model (by the base's sha256)."""

    sha256: str
    name: str
    base_sha256: str
    size_bytes: int

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> AdapterRecord:
        return cls(sha256=check_sha256(str(data["sha256"])), name=str(data["name"]),
                   base_sha256=check_sha256(str(data["base_sha256"])),
                   size_bytes=int(data.get("size_bytes", 0)))


@dataclass(frozen=True)
class Slot:
    """One model name's place on the device."""

    name: str
    active: ModelRecord | None = None
    previous: ModelRecord | None = None
    trial: bool = False  # the active model awaits CommitModel; a restart goes back
    trial_until: float = 0.0  # wall-clock time the trial is given up at (0: no deadline)
    reverted: str = ""  # sha256 of the last model on trial given up in this slot
    reverted_reason: str = ""
    reverted_cause: RevertCause = RevertCause.UNSPECIFIED
    aliases: tuple[str, ...] = ()
    pinned: bool = False  # never unloaded least-recently-used to make room
    memory_bytes: int = 0  # the signed estimate of its active model (0: none was sent)
    replaced_by: str = ""  # held back by a load with replace on trial in that slot
    taken_aliases: tuple[tuple[str, str], ...] = ()  # (alias, slot) a load on trial took
    # LoRA adapters: the committed ones, the one a request that names none runs with ("" =
    # the base alone), and the one on trial (it is the default until committed or given up)
    adapters: tuple[AdapterRecord, ...] = ()
    adapter_default: str = ""
    adapter_trial: AdapterRecord | None = None

    @property
    def serving(self) -> bool:
        """It has an active model that requests may reach."""
        return self.active is not None and not self.replaced_by

    @property
    def blobs(self) -> set[str]:
        adapters = {a.sha256 for a in self.adapters} | (
            {self.adapter_trial.sha256} if self.adapter_trial else set())
        return {r.sha256 for r in (self.active, self.previous) if r} | adapters


EMPTY = Slot("")


@dataclass(frozen=True)
class StoreState:
    slots: tuple[Slot, ...] = ()
    current: str = ""  # the slot of the most recent load
    staged: str = ""  # sha256 verified ahead of activation (pre-pull), kept from GC
    # the highest signed manifest version accepted: a load must carry a greater one, so a
    # captured manifest cannot be played again, here or after a restart
    manifest_seq: int = 0

    # -- slots ----------------------------------------------------------------------------
    def slot(self, name: str) -> Slot | None:
        return next((s for s in self.slots if s.name == name), None)

    def slot_of(self, sha256: str) -> Slot | None:
        """The slot whose active model is ``sha256``."""
        return next((s for s in self.slots if s.active and s.active.sha256 == sha256), None)

    def serving(self) -> list[Slot]:
        return [s for s in self.slots if s.serving]

    def named(self, name: str) -> Slot | None:
        """The serving slot a request's model name or alias means."""
        return next((s for s in self.serving() if s.name == name), None) or next(
            (s for s in self.serving() if name in s.aliases), None)

    def default(self, fmt: str = "") -> Slot | None:
        """What a request naming no model gets (among models of format ``fmt`` when given):
        the alias "default", else the most recently loaded model."""
        serving = [s for s in self.serving()
                   if s.active is not None and (not fmt or s.active.format == fmt)]
        return next((s for s in serving if "default" in s.aliases), None) or next(
            (s for s in serving if s.name == self.current), None) or (
            serving[-1] if serving else None)

    def with_slot(self, slot: Slot) -> StoreState:
        kept = tuple(s if s.name != slot.name else slot for s in self.slots)
        if self.slot(slot.name) is None:
            kept = (*kept, slot)
        return replace(self, slots=kept)

    @property
    def pinned(self) -> set[str]:
        """The blobs the store must keep: every slot's active, previous (for rollback) and
        adapters, and the staged one."""
        kept = {self.staged} if self.staged else set()
        for s in self.slots:
            kept |= s.blobs
        return kept

    # -- the current slot, as agents before slots described their one model ----------------
    @property
    def focus(self) -> Slot:
        return self.slot(self.current) or EMPTY

    @property
    def legacy(self) -> Slot:
        """What an agent of one model would report: the current slot, or, when it holds no
        model (a new model's trial was given up), the model serving by default with that
        slot's revert, so an older controller sees its model given up and what serves."""
        focus = self.focus
        if focus.active is not None:
            return focus
        serving = self.default()
        if serving is None:
            return focus
        return replace(serving, reverted=focus.reverted or serving.reverted,
                       reverted_reason=focus.reverted_reason or serving.reverted_reason,
                       reverted_cause=focus.reverted_cause if focus.reverted
                       else serving.reverted_cause)

    @property
    def active(self) -> ModelRecord | None:
        return self.focus.active

    @property
    def previous(self) -> ModelRecord | None:
        return self.focus.previous

    @property
    def trial(self) -> bool:
        return self.focus.trial

    @property
    def trial_until(self) -> float:
        return self.focus.trial_until

    @property
    def reverted(self) -> str:
        return self.focus.reverted

    @property
    def reverted_reason(self) -> str:
        return self.focus.reverted_reason

    @property
    def reverted_cause(self) -> RevertCause:
        return self.focus.reverted_cause

    @property
    def adapter_trial(self) -> AdapterRecord | None:
        return self.focus.adapter_trial


# -- transitions ---------------------------------------------------------------------------
def activate(state: StoreState, record: ModelRecord, trial: bool = False,
             trial_until: float = 0.0, aliases: tuple[str, ...] | None = None,
             pinned: bool = False, memory_bytes: int = 0, replace_others: bool = False
             ) -> StoreState:
    """``record`` becomes its slot's active model; the old active one its previous.

    Re-activating the model on trial keeps it on trial unless ``trial`` is false. ``aliases``
    (None: keep the slot's) move here from any slot that held them. ``replace_others`` drops
    every other slot, or holds it back while ``record`` is on trial.
    """
    name = record.name
    old = state.slot(name) or Slot(name)
    previous = old.previous
    if old.active and old.active.sha256 != record.sha256:
        previous = old.active
        if old.trial:  # an unconfirmed model never becomes the rollback target
            previous = old.previous
    if previous and previous.sha256 == record.sha256:
        previous = None
    new = replace(old, active=record, previous=previous, trial=trial,
                  trial_until=trial_until if trial else 0.0, pinned=pinned,
                  memory_bytes=memory_bytes, replaced_by="", taken_aliases=())
    slots = []
    taken: list[tuple[str, str]] = []
    for s in state.slots:
        if s.name == name:
            continue
        if aliases is not None and set(s.aliases) & set(aliases):
            taken += [(a, s.name) for a in s.aliases if a in aliases]
            s = replace(s, aliases=tuple(a for a in s.aliases if a not in aliases))
        if replace_others:
            if not trial:
                continue
            s = replace(s, replaced_by=name)
        slots.append(s)
    if aliases is not None:
        new = replace(new, aliases=tuple(sorted(set(aliases))),
                      taken_aliases=tuple(taken) if trial else ())
    slots.append(adapters_for_models(new))
    return replace(state, slots=tuple(slots), current=name,
                   staged="" if state.staged == record.sha256 else state.staged)


def commit(state: StoreState, name: str) -> StoreState:
    """End the trial of ``name``'s active model: what its load replaced is dropped now."""
    slot = state.slot(name)
    assert slot is not None
    kept = tuple(s for s in state.slots if s.replaced_by != name)
    state = replace(state, slots=kept)
    return state.with_slot(replace(slot, trial=False, trial_until=0.0, taken_aliases=()))


def give_up(state: StoreState, name: str, reason: str, cause: RevertCause) -> StoreState:
    """The model on trial in ``name`` is given up: the slot's previous model becomes active
    (or none); the slots its load held back serve again and its taken aliases go back."""
    slot = state.slot(name)
    assert slot is not None and slot.trial and slot.active is not None
    back = dict(slot.taken_aliases)
    aliases = tuple(a for a in slot.aliases if a not in back)
    new = adapters_for_models(replace(
        slot, active=slot.previous, previous=None, trial=False, trial_until=0.0,
        reverted=slot.active.sha256, reverted_reason=reason, reverted_cause=cause,
        aliases=aliases, taken_aliases=()))
    slots = []
    for s in state.slots:
        if s.name == name:
            s = new
        else:
            returned = tuple(a for a, owner in back.items() if owner == s.name)
            s = replace(s, replaced_by="" if s.replaced_by == name else s.replaced_by,
                        aliases=tuple(sorted({*s.aliases, *returned})))
        slots.append(s)
    return replace(state, slots=tuple(slots))


def deactivate(state: StoreState, name: str = "") -> StoreState:
    """Stop serving ``name`` (every slot when empty); its active model is kept as previous,
    its aliases go (a later load of it names its own)."""
    slots = tuple(
        replace(s, active=None, previous=s.active or s.previous, trial=False, trial_until=0.0,
                aliases=(), taken_aliases=())
        if not name or s.name == name else s for s in state.slots)
    return replace(state, slots=slots)


def quarantined(state: StoreState, sha256: str, reason: str) -> StoreState:
    """Corrupt bytes are no longer held: a slot whose active model they are goes back to its
    previous one (or none); a previous or staged copy is no longer kept."""
    slots = []
    for s in state.slots:
        if s.active and s.active.sha256 == sha256:
            s = adapters_for_models(replace(s, active=s.previous, previous=None, trial=False,
                                            trial_until=0.0, reverted=sha256,
                                            reverted_reason=reason))
        elif s.previous and s.previous.sha256 == sha256:
            s = adapters_for_models(replace(s, previous=None))
        slots.append(s)
    return replace(state, slots=tuple(slots),
                   staged="" if state.staged == sha256 else state.staged)


def adapters_for_models(slot: Slot) -> Slot:
    """Adapters are kept for the slot's active and previous models only; the default and a
    trial belong to the active model."""
    bases = {r.sha256 for r in (slot.active, slot.previous) if r}
    active = slot.active.sha256 if slot.active else ""
    kept = tuple(a for a in slot.adapters if a.base_sha256 in bases)
    default = next((a.name for a in kept
                    if a.name == slot.adapter_default and a.base_sha256 == active), "")
    trial = slot.adapter_trial
    return replace(slot, adapters=kept, adapter_default=default,
                   adapter_trial=trial if trial and trial.base_sha256 == active else None)


# -- state.json ----------------------------------------------------------------------------
def _slot_from(data: dict[str, Any], name: str | None = None) -> Slot:
    active, previous = data.get("active"), data.get("previous")
    act = ModelRecord.from_dict(active) if active else None
    prev = ModelRecord.from_dict(previous) if previous else None
    return Slot(
        name=name if name is not None else str(data.get("name", "")),
        active=act, previous=prev,
        trial=bool(data.get("trial", False)) and bool(active),
        trial_until=float(data.get("trial_until", 0.0)),
        reverted=str(data.get("reverted", "")),
        reverted_reason=str(data.get("reverted_reason", "")),
        reverted_cause=_cause(data.get("reverted_cause", 0)),
        aliases=tuple(str(a) for a in data.get("aliases", [])),
        pinned=bool(data.get("pinned", False)),
        memory_bytes=int(data.get("memory_bytes", 0)),
        replaced_by=str(data.get("replaced_by", "")),
        taken_aliases=tuple((str(a), str(s)) for a, s in data.get("taken_aliases", [])),
        adapters=tuple(AdapterRecord.from_dict(a) for a in data.get("adapters", [])),
        adapter_default=str(data.get("adapter_default", "")),
        adapter_trial=(AdapterRecord.from_dict(data["adapter_trial"])
                       if data.get("adapter_trial") else None),
    )


def from_json(data: dict[str, Any]) -> StoreState:
    """``state.json`` as read; one written before slots reads as one slot (of its model's
    name), current."""
    common = {"staged": str(data.get("staged", "")),
              "manifest_seq": int(data.get("manifest_seq", 0))}
    if "slots" in data:
        return StoreState(slots=tuple(_slot_from(s) for s in data["slots"]),
                          current=str(data.get("current", "")), **common)  # type: ignore[arg-type]
    legacy = _slot_from(data, "")
    record = legacy.active or legacy.previous
    if record is None:
        return StoreState(**common)  # type: ignore[arg-type]
    legacy = replace(legacy, name=record.name)
    return StoreState(slots=(legacy,), current=legacy.name, **common)  # type: ignore[arg-type]


def _slot_json(s: Slot) -> dict[str, Any]:
    return {
        "name": s.name,
        "active": asdict(s.active) if s.active else None,
        "previous": asdict(s.previous) if s.previous else None,
        "trial": s.trial, "trial_until": s.trial_until,
        "reverted": s.reverted, "reverted_reason": s.reverted_reason,
        "reverted_cause": int(s.reverted_cause),
        "aliases": list(s.aliases), "pinned": s.pinned, "memory_bytes": s.memory_bytes,
        "replaced_by": s.replaced_by, "taken_aliases": [list(t) for t in s.taken_aliases],
        "adapters": [asdict(a) for a in s.adapters],
        "adapter_default": s.adapter_default,
        "adapter_trial": asdict(s.adapter_trial) if s.adapter_trial else None,
    }


def to_json(state: StoreState) -> dict[str, Any]:
    focus = _slot_json(state.legacy)  # what an agent of one model, downgraded to, reads
    del focus["name"]
    return {"version": STATE_VERSION, "current": state.current, "staged": state.staged,
            "manifest_seq": state.manifest_seq,
            "slots": [_slot_json(s) for s in state.slots], **focus}


def _cause(value: object) -> RevertCause:
    try:
        return RevertCause(int(value))  # type: ignore[call-overload]
    except (TypeError, ValueError):
        return RevertCause.UNSPECIFIED
