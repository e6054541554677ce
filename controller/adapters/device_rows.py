"""The device list read straight from a SQLite database with the standard library's sqlite3,
so `fleet device list` starts without SQLAlchemy and pydantic (importing them is most of the
command's time; see bench/cli_startup.py).

The tables stay those of ``controller.adapters.tables``: this reads them by column name and
only from a database at the code's schema revision (``controller.migrations.HEAD``). Every
other case (another kind of database, a schema to migrate, a missing file, an unknown or
empty group, any SQLite error) returns ``None`` and the caller takes the SQLModel path, which
migrates or raises the usual error. tests/unit/test_device_rows.py checks that both paths
give the same rows.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
from datetime import datetime
from pathlib import Path
from typing import Any

from controller.core.groups import ALL, below, children_of
from controller.migrations import HEAD

HIDDEN = ("probed_json", "labels_json")  # shown parsed (labels) or by `device show`


def row_of(fields: dict[str, Any], groups: list[str]) -> dict[str, Any]:
    """One device as `fleet device list --json` prints it: its columns without the JSON
    blobs, its direct groups (sorted) and its labels."""
    labels = json.loads(fields.get("labels_json") or "{}")
    out = {k: v for k, v in fields.items() if k not in HIDDEN}
    out["groups"] = sorted(groups)
    out["labels"] = {str(k): str(v) for k, v in labels.items()}
    return out


def _value(value: Any, declared: str) -> Any:
    if value is None:
        return None
    if declared == "BOOLEAN":
        return bool(value)
    if declared in ("DATETIME", "TIMESTAMP") and isinstance(value, str):
        with contextlib.suppress(ValueError):
            return datetime.fromisoformat(value)
    return value


def read_devices(url: str, group: str | None) -> list[dict[str, Any]] | None:
    """Every device (or those of ``group`` and the groups nested in it) as ``row_of`` shapes
    them, ordered by name; ``None`` when this path cannot answer (see the module doc)."""
    if not url.startswith("sqlite:///"):
        return None
    path = Path(url.removeprefix("sqlite:///"))
    if not path.is_file():
        return None
    try:
        conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=5)
    except sqlite3.Error:
        return None
    try:
        with contextlib.closing(conn):
            version = conn.execute("SELECT version_num FROM alembic_version").fetchall()
            if [v for (v,) in version] != [HEAD]:
                return None
            declared = {r[1]: (r[2] or "").upper()
                        for r in conn.execute("PRAGMA table_info(device)")}
            cursor = conn.execute("SELECT * FROM device ORDER BY name")
            columns = [c[0] for c in cursor.description]
            devices = cursor.fetchall()
            groups: dict[str, list[str]] = {}
            for device, name in conn.execute("SELECT device_name, group_name "
                                             "FROM group_membership"):
                groups.setdefault(device, []).append(name)
            inside: set[str] | None = None
            if group and group != ALL:
                if conn.execute("SELECT 1 FROM device_group WHERE name = ?",
                                (group,)).fetchone() is None:
                    return None
                edges = conn.execute("SELECT group_name, parent_name FROM group_parent")
                inside = below(group, children_of(edges.fetchall()))
    except sqlite3.Error:
        return None
    rows = []
    for values in devices:
        fields = {c: _value(v, declared.get(c, "")) for c, v in zip(columns, values,
                                                                      strict=True)}
        direct = groups.get(fields["name"], [])
        if inside is not None and not inside.intersection(direct):
            continue
        rows.append(row_of(fields, direct))
    if group and not rows:
        return None  # the SQLModel path says why (an empty group is an error)
    return rows
