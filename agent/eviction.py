"""Which resident models to unload so that another one fits: a pure choice, no I/O.

The memory guard counts every resident model (its signed estimate, plus its adapters). To
load ``need`` bytes into a slot, models of other slots are unloaded least-recently-used first;
never a pinned model, one on trial (its health is being judged) or one serving a request now.
The plan unloads as few models as it can: with none unloaded the new model either loads beside
the slot's old one (hand-over) or stops it first (stop-then-load), as a single-model device
always did; only when neither fits are others unloaded, the least recently used first, until
one does (hand-over preferred at each count).
"""

from __future__ import annotations

from dataclasses import dataclass

MIB = 1024 * 1024


@dataclass(frozen=True)
class Resident:
    """A model loaded in a worker now, as the memory guard sees it."""

    name: str  # its slot
    memory_bytes: int  # with its adapters
    last_used: float  # monotonic or wall seconds: only the order matters
    pinned: bool = False
    on_trial: bool = False
    busy: bool = False  # serving a request now

    @property
    def why_kept(self) -> str:
        """Why it may not be unloaded ("" when it may)."""
        return ("pinned" if self.pinned else "on trial" if self.on_trial
                else "serving a request" if self.busy else "")


@dataclass(frozen=True)
class RoomPlan:
    evict: tuple[str, ...]  # slots to unload, in this order
    hand_over: bool  # the slot's old model keeps serving until the new one is ready


def plan_room(need: int, budget: int, residents: list[Resident], slot: str,
              keep_slot: bool = False) -> RoomPlan | None:
    """How to fit ``need`` bytes for ``slot`` within ``budget``; None when unloading every
    model that may be unloaded is not enough (``holders`` then says what holds the memory).
    ``keep_slot``: the slot's own model stays loaded (an adapter joining it): only plans that
    load beside it (hand-over) count."""
    in_use = sum(r.memory_bytes for r in residents)
    own = sum(r.memory_bytes for r in residents if r.name == slot)
    victims = sorted((r for r in residents if r.name != slot and not r.why_kept),
                     key=lambda r: (r.last_used, r.name))
    freed = 0
    for count in range(len(victims) + 1):
        if count:
            freed += victims[count - 1].memory_bytes
        free = budget - in_use + freed
        if need <= free:
            return RoomPlan(tuple(v.name for v in victims[:count]), hand_over=True)
        if need <= free + own and not keep_slot:
            return RoomPlan(tuple(v.name for v in victims[:count]), hand_over=False)
    return None


def holders(residents: list[Resident], slot: str) -> str:
    """What holds the memory a load could not get, for the refusal: the models that may not
    be unloaded and why, largest first."""
    kept = sorted((r for r in residents if r.name != slot and r.why_kept),
                  key=lambda r: -r.memory_bytes)
    if not kept:
        return ""
    return "held by " + ", ".join(
        f"{r.name} (~{r.memory_bytes / MIB:.0f} MiB, {r.why_kept})" for r in kept)
