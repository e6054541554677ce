"""`fleet device list`: the devices as rows, read the light way when the database allows."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from controller import settings
from controller.adapters.device_rows import read_devices, row_of

if TYPE_CHECKING:
    from controller.services.context import Fleet


def listing(db: str | None, group: str | None,
            open_fleet: Callable[[], Fleet]) -> list[dict[str, Any]]:
    """Each device (of ``group`` and the groups nested in it) as ``row_of`` shapes it. A
    SQLite database at the current schema is read with sqlite3 alone; anything else (and
    every error case) goes through the inventory, which migrates and explains."""
    rows = read_devices(settings.db_url(db), group)
    if rows is not None:
        return rows
    inventory = open_fleet().inventory
    devices = inventory.devices_in_group(group) if group else inventory.list_devices()
    return [row_of(d.model_dump(), d.group_names) for d in devices]
