"""``SqlInventory.present``: which of some names are still devices of the fleet, in one query
(the site routes ask it at each device's turn), on SQLite and PostgreSQL."""

from __future__ import annotations

from controller.adapters.inventory import SqlInventory
from controller.adapters.tables import Device


def test_present_names_only_the_devices_still_in_the_fleet(db_url: str) -> None:
    inventory = SqlInventory(db_url)
    for name in ("kiosk-1", "kiosk-2", "kiosk-3"):
        inventory.add_device(Device(name=name, host="127.0.0.1"))
    assert inventory.present(["kiosk-1", "kiosk-2", "nope"]) == {"kiosk-1", "kiosk-2"}
    inventory.remove_devices(["kiosk-2"])
    assert inventory.present(["kiosk-1", "kiosk-2", "kiosk-3"]) == {"kiosk-1", "kiosk-3"}
    assert inventory.present([]) == set()
