"""Waves: a rollout reaches its devices in growing steps (``--waves 1,10%,50%,100%``).

Each entry is how many of the contacted devices have started once that wave is done: a
count or a share (rounded up, at least one more than the wave before). The last wave always
takes every device, whether or not the spec ends at 100 %.
"""

from __future__ import annotations

import math
import re

_ENTRY = re.compile(r"(\d+)(%?)")


def parse(spec: str) -> list[tuple[int, bool]]:
    """``"1,10%,50%,100%"`` -> [(1, False), (10, True), (50, True), (100, True)].
    ValueError naming the bad entry."""
    entries = []
    for raw in spec.split(","):
        found = _ENTRY.fullmatch(raw.strip())
        if not found or int(found.group(1)) == 0 or (found.group(2) and
                                                     int(found.group(1)) > 100):
            raise ValueError(raw.strip())
        entries.append((int(found.group(1)), bool(found.group(2))))
    return entries


def sizes(spec: str, devices: int) -> list[int]:
    """How many devices each wave adds, for ``devices`` contacted devices (empty spec: one
    wave). Waves that would add nobody are dropped; the sizes always sum to ``devices``."""
    if devices <= 0:
        return []
    if not spec.strip():
        return [devices]
    reached = 0
    out = []
    for value, share in parse(spec):
        target = math.ceil(devices * value / 100) if share else value
        target = min(devices, max(target, reached + 1))
        if target > reached:
            out.append(target - reached)
            reached = target
        if reached == devices:
            break
    if reached < devices:
        out.append(devices - reached)
    return out


def assign(order: list[int], spec: str) -> list[list[int]]:
    """Split ``order`` (indices of contacted devices, in rollout order) into waves."""
    waves, start = [], 0
    for size in sizes(spec, len(order)):
        waves.append(order[start:start + size])
        start += size
    return waves
