"""Durations as operators type them: ``90``, ``90s``, ``10m``, ``1h30m``, ``2d``."""

from __future__ import annotations

import re

_PART = re.compile(r"(\d+(?:\.\d+)?)([smhd]?)")
_UNIT = {"": 1.0, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def parse_duration(text: str) -> float:
    """Seconds; ValueError for anything else (empty, negative, unknown unit)."""
    text = text.strip().lower()
    if not text:
        raise ValueError(text)
    total, pos = 0.0, 0
    while pos < len(text):
        found = _PART.match(text, pos)
        if not found or found.end() == pos:
            raise ValueError(text)
        total += float(found.group(1)) * _UNIT[found.group(2)]
        pos = found.end()
    return total


def format_duration(seconds: float) -> str:
    seconds = int(round(seconds))
    if seconds < 120:
        return f"{seconds} s"
    if seconds < 7200:
        return f"{seconds // 60} min"
    return f"{seconds / 3600:.1f} h"
