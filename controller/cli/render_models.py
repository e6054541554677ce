"""Every model a device runs (several per device), for `fleet status`: a JSON object per
model, and a table of them under the device table."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from controller.cli.common import console, esc
from controller.core.device_models import DeviceModel
from controller.services.observing import DeviceStatus


def model_dict(m: DeviceModel) -> dict[str, Any]:
    return {"name": m.name, "variant": m.variant, "sha256": m.sha256,
            "aliases": list(m.aliases), "pinned": m.pinned, "resident": m.resident,
            "on_trial": m.on_trial, "memory_bytes": m.memory_bytes,
            "last_used_at": m.last_used_at or None, "adapter": m.adapter}


def last_used(m: DeviceModel, now: float | None = None) -> str:
    if not m.last_used_at:
        return "-"
    ago = max(0.0, (now or time.time()) - m.last_used_at)
    if ago < 90:
        return f"{ago:.0f} s ago"
    return f"{ago / 60:.0f} min ago" if ago < 5400 else f"{ago / 3600:.1f} h ago"


def models_table(rows: Sequence[DeviceStatus]) -> None:
    """One line per model of each device that runs more than one, or any with an alias or
    pinned (a fleet of one model each is fully said by the device table)."""
    from rich.table import Table

    shown = [r for r in rows if len(r.models) > 1
             or any(m.aliases or m.pinned or m.adapter for m in r.models)]
    if not shown:
        return
    table = Table("device", "model", "variant", "adapter", "aliases", "pinned", "loaded",
                  "MiB", "last used", title="models per device")
    for r in shown:
        for m in r.models:
            table.add_row(esc(r.device.name), esc(m.name), esc(m.variant or "-"),
                          esc(m.adapter or "-"), esc(", ".join(m.aliases) or "-"),
                          "yes" if m.pinned else "-",
                          ("on trial" if m.on_trial else "yes") if m.resident else "no",
                          f"{m.memory_bytes / 2**20:,.0f}" if m.memory_bytes else "-",
                          last_used(m))
    console.print(table)
