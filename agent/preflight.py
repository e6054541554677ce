"""Can this device take a blob? Asked before any byte is sent, and again before every retry.

Counts what is really on disk: an interrupted upload by its allocated blocks (a preallocated
multi-channel upload is sparse: its size says nothing of what arrived), a held blob only when
its bytes are intact (checked as for activation; a corrupt one is quarantined and so not
held), and what the store may free (``ModelStore.reclaimable``).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from agent.contract import DISK_MARGIN_BYTES, sha256_file
from agent.emulation import MIB, DeviceView
from agent.eviction import Resident, holders, plan_room
from agent.integrity import allocated_bytes
from agent.probe import disk_usage
from agent.store import ModelStore, check_sha256


def disk_free(store: ModelStore, view: DeviceView) -> int:
    """Free bytes at the store (within an emulated device's disk size)."""
    free, _total = disk_usage(store.root)
    if view.disk_limit_bytes:
        free = min(free, max(0, view.disk_limit_bytes - store.used_bytes()))
    return free


def memory_refusal(need: int, budget: int, slot: str, residents: list[Resident]) -> str:
    """Why ``need`` bytes cannot load into ``slot`` ("" when they can): beyond the budget, or
    beyond what unloading every model that may go would free (a model serving a request now
    counts as one that may go: it will have finished by the time the blob is sent)."""
    if need > budget:
        return f"memory: needs ~{need / MIB:,.0f} MiB, budget {budget / MIB:,.0f} MiB"
    settled = [replace(r, busy=False) for r in residents]
    if plan_room(need, budget, settled, slot) is not None:
        return ""
    in_use = sum(r.memory_bytes for r in settled)
    return (f"memory: needs ~{need / MIB:,.0f} MiB beside what stays loaded (budget "
            f"{budget / MIB:,.0f} MiB, {in_use / MIB:,.0f} MiB in use, "
            f"{holders(settled, slot)}): unpin it, or deploy with --replace")


def check_fit(store: ModelStore, view: DeviceView, memory_budget: int, sha256: str,
              size_bytes: int, memory_needed: int, reclaim: bool = False,
              loaded: tuple[str, list[Resident]] = ("", [])) -> dict[str, Any]:
    """The CheckFit answer as a dict of the response's fields. With ``reclaim``, frees what
    the store may free when the blob would not fit otherwise. ``loaded``: the slot it would
    load into and the models resident now (agent.eviction), or none: the budget alone."""
    check_sha256(sha256)
    held = store.holds(sha256)
    incoming = store.incoming_dir
    part = incoming / f"{sha256}.part"
    on_disk = 0 if held else allocated_bytes(part) + allocated_bytes(incoming / sha256)
    need_disk = 0 if held else max(0, size_bytes - on_disk) + DISK_MARGIN_BYTES
    free = disk_free(store, view)
    reclaimable = 0 if held else store.reclaimable_bytes(keep=sha256)
    reclaimed = 0
    if reclaim and need_disk > free and reclaimable:
        reclaimed = store.reclaim(need_disk - free, keep=sha256)
        free = disk_free(store, view)
        reclaimable = store.reclaimable_bytes(keep=sha256)
    reasons = []
    if need_disk > free:
        more = (f"; {reclaimable / MIB:,.1f} MiB more could be freed (unused blobs, idle "
                "uploads)" if reclaimable else "")
        reasons.append(f"disk: needs {need_disk / MIB:,.1f} MiB, {free / MIB:,.1f} MiB free"
                       f"{more} (current and previous models are kept for rollback)")
    memory = memory_refusal(memory_needed, memory_budget, *loaded)
    if memory:
        reasons.append(memory)
    staged = part.stat().st_size if part.exists() and not held else 0
    # a multi-channel upload resumes from its own .ranges record, never from a prefix
    prefix = bool(staged) and not (incoming / f"{sha256}.ranges").exists()
    return {"fits": not reasons, "already_held": held, "disk_free_bytes": free,
            "disk_needed_bytes": need_disk, "memory_budget_bytes": max(memory_budget, 0),
            "reason": "; ".join(reasons), "staged_bytes": staged,
            "staged_sha256": sha256_file(part) if prefix else "",
            "reclaimable_bytes": reclaimable, "reclaimed_bytes": reclaimed}
