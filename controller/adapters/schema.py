"""AlembicSchema: the controller database's schema version, upgrades, downgrades and checks.

Every command that opens the database calls ``ensure_current``: a database at ``HEAD`` costs
one query; an older one (including one made by edgefleet 0.1.0, which had no version table)
is upgraded in place, a SQLite file first copied aside; a database newer than this code is
refused, since this code would misread it. On PostgreSQL an advisory lock serialises the
upgrade, so several controllers starting at once upgrade it once.
"""

from __future__ import annotations

import contextlib
import fcntl
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import inspect, text
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import SQLAlchemyError

from controller.errors import SchemaError
from controller.migrations import HEAD

if TYPE_CHECKING:  # Alembic loads only to change or report the schema (~0.1 s to import)
    from alembic.config import Config
    from alembic.script import ScriptDirectory

MIGRATIONS = Path(__file__).resolve().parent.parent / "migrations"
_PG_LOCK = 0x6564676566  # "edgef": the advisory lock id of schema upgrades


@dataclass(frozen=True)
class SchemaStatus:
    current: str  # "" for an empty database, "legacy" for 0.1.0's unversioned tables
    head: str
    pending: list[str]  # revisions an upgrade would apply, oldest first

    @property
    def up_to_date(self) -> bool:
        return self.current == self.head


def _config(connection: Connection) -> Config:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    from sqlmodel import SQLModel

    from controller.adapters import tables  # noqa: F401  (registers the tables)

    config.attributes["target_metadata"] = SQLModel.metadata
    return config


def scripts() -> ScriptDirectory:
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    return ScriptDirectory.from_config(config)


def _revision(connection: Connection) -> str:
    from alembic.migration import MigrationContext

    current = MigrationContext.configure(connection).get_current_revision()
    if current:
        return current
    return "legacy" if inspect(connection).has_table("device") else ""


def status(engine: Engine) -> SchemaStatus:
    with engine.connect() as connection:
        current = _revision(connection)
    script = scripts()
    head = script.get_current_head() or ""
    known = {s.revision for s in script.walk_revisions()}
    if current not in ("", "legacy") and current not in known:
        return SchemaStatus(current, head, [])
    base = None if current in ("", "legacy") else current
    pending = [s.revision for s in script.iterate_revisions(head, base)]
    return SchemaStatus(current, head, list(reversed(pending)))


def ensure_current(engine: Engine, url: str) -> None:
    """Upgrade the database to ``HEAD`` if it is older; refuse one newer than this code."""
    with engine.connect() as connection:
        try:  # Alembic's own version table, read without loading Alembic
            found = [row[0] for row in connection.execute(
                text("SELECT version_num FROM alembic_version"))]
        except SQLAlchemyError:  # no version table yet: empty, or made by 0.1.0
            found = []
        if found == [HEAD]:
            return
    upgrade(engine, url)


def upgrade(engine: Engine, url: str, target: str = "head") -> SchemaStatus:
    with _sqlite_lock(url):  # two commands opening a fresh database at once migrate it once
        before = status(engine)
        _refuse_newer(before)
        if before.up_to_date and target == "head":
            return before
        if before.current and engine.dialect.name == "sqlite":
            _backup_sqlite(url, before.current)
        from alembic import command

        with engine.begin() as connection:
            _lock(connection)
            command.upgrade(_config(connection), target)
        return status(engine)


def downgrade(engine: Engine, url: str, target: str) -> SchemaStatus:
    with _sqlite_lock(url):
        before = status(engine)
        _refuse_newer(before)
        if engine.dialect.name == "sqlite" and before.current:
            _backup_sqlite(url, before.current)
        from alembic import command

        with engine.begin() as connection:
            _lock(connection)
            command.downgrade(_config(connection), target)
        return status(engine)


@contextlib.contextmanager
def _sqlite_lock(url: str) -> Iterator[None]:
    """An exclusive lock file beside a SQLite database while its schema changes (PostgreSQL
    has its advisory lock instead)."""
    if not url.startswith("sqlite:///"):
        yield
        return
    path = Path(url.removeprefix("sqlite:///"))
    with path.with_name(path.name + ".migrate.lock").open("w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def drift(engine: Engine) -> list[str]:
    """Differences between the live schema and the tables the code defines, one line each:
    empty when the database was migrated correctly."""
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    with engine.connect() as connection:
        config = _config(connection)
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        diffs = compare_metadata(context, config.attributes["target_metadata"])
    return [_describe(d) for d in diffs]


def _describe(diff: Any) -> str:
    if isinstance(diff, list):  # column modifications come grouped
        return "; ".join(_describe(d) for d in diff)
    kind, *rest = diff
    names = []
    for item in rest:
        name = getattr(item, "name", None)
        if name:
            names.append(str(name))
        elif isinstance(item, str):
            names.append(item)
    return f"{kind} {' '.join(names)}".strip()


def _refuse_newer(found: SchemaStatus) -> None:
    if found.current not in ("", "legacy") and not found.pending and not found.up_to_date:
        raise SchemaError(
            f"the database schema is at revision {found.current}, which this edgefleet does "
            f"not know (it knows up to {found.head}): a newer edgefleet wrote it",
            hint="upgrade edgefleet to the version that wrote it, or point --db / "
            "FLEET_DB_URL at another database; nothing was changed")


def _lock(connection: Connection) -> None:
    if connection.dialect.name == "postgresql":
        connection.execute(text("SELECT pg_advisory_xact_lock(:id)"), {"id": _PG_LOCK})


def _backup_sqlite(url: str, revision: str) -> Path | None:
    path = Path(url.removeprefix("sqlite:///"))
    if not url.startswith("sqlite:///") or not path.is_file():
        return None
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S")
    backup = path.with_name(f"{path.name}.{revision}.{stamp}.bak")
    # sqlite's own backup: consistent even with pages still in the WAL file
    with sqlite3.connect(path, timeout=30) as source, sqlite3.connect(backup) as target:
        source.backup(target)
    return backup
