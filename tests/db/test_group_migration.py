"""A 0.1.0 fleet's groups survive the move to many groups per device (revision
0003_group_membership) and the way back, on SQLite and a real PostgreSQL."""

from __future__ import annotations

import json
from pathlib import Path

import sqlalchemy as sa

from controller.adapters import schema
from controller.adapters.db import engine_for
from tests.conftest import Cli
from tests.db.test_migrations import _legacy_database


def _devices(cli: Cli, url: str, *args: str) -> dict[str, dict[str, object]]:
    listed = cli("--db", url, "device", "list", "--json", *args)
    assert listed.code == 0, listed.err
    return {d["name"]: d for d in json.loads(listed.out)["devices"]}


def test_a_previous_release_fleet_keeps_its_groups_up_and_down(db_url: str,
                                                                home: Path, cli: Cli) -> None:
    _legacy_database(db_url)
    devices = _devices(cli, db_url)  # opening it upgrades it
    assert {n: d["groups"] for n, d in devices.items()} == {
        "kiosk-1": ["kiosks"], "kiosk-2": ["kiosks"]}
    assert devices["kiosk-1"]["variant"] == "q4_k_m"
    groups = json.loads(cli("--db", db_url, "group", "list", "--json").out)["groups"]
    assert [g["name"] for g in groups] == ["kiosks", "lab"]  # the empty group too
    assert set(_devices(cli, db_url, "--group", "kiosks")) == {"kiosk-1", "kiosk-2"}

    # the new shape: kiosk-1 in two groups, kiosks nested in emea
    assert cli("--db", db_url, "device", "group", "kiosk-1", "--add", "berlin").code == 0
    assert cli("--db", db_url, "group", "parent", "kiosks", "--add", "emea").code == 0
    assert set(_devices(cli, db_url, "--group", "emea")) == {"kiosk-1", "kiosk-2"}
    assert set(_devices(cli, db_url, "--group", "berlin")) == {"kiosk-1"}

    engine = engine_for(db_url, migrate=False)
    schema.downgrade(engine, db_url, "0001_baseline")
    with engine.connect() as c:
        rows = dict(c.execute(sa.text("SELECT name, group_name FROM device")).all())
        assert not sa.inspect(c).has_table("group_membership")
    # one group each, chosen as the revision says: the alphabetically first direct group
    assert rows == {"kiosk-1": "berlin", "kiosk-2": "kiosks"}

    schema.upgrade(engine, db_url)
    devices = _devices(cli, db_url)
    assert {n: d["groups"] for n, d in devices.items()} == {
        "kiosk-1": ["berlin"], "kiosk-2": ["kiosks"]}
    assert devices["kiosk-1"]["labels"] == {"site": "berlin"}
    assert schema.status(engine).up_to_date and schema.drift(engine) == []


def test_choose_group_is_deterministic() -> None:
    from importlib import import_module

    revision = import_module("controller.migrations.versions.0003_group_membership")
    assert revision.choose_group(["kiosks", "berlin", "ungrouped"]) == "berlin"
    assert revision.choose_group(["ungrouped"]) == "ungrouped"
    assert revision.choose_group([]) == "ungrouped"
