"""SQLModel engine: one per process. SQLite gets WAL and foreign keys; any other URL as is."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import event, inspect, text
from sqlalchemy.engine import Engine
from sqlmodel import SQLModel, create_engine

from controller.adapters import tables  # noqa: F401  (registers the tables)
from controller.errors import UsageError

_ENGINES: dict[str, Engine] = {}


def engine_for(url: str) -> Engine:
    if url in _ENGINES:
        return _ENGINES[url]
    kwargs: dict[str, Any] = {}
    if url.startswith("sqlite:///"):
        path = Path(url.removeprefix("sqlite:///"))
        path.parent.mkdir(parents=True, exist_ok=True)
        kwargs["connect_args"] = {"check_same_thread": False, "timeout": 30}
    try:
        engine = create_engine(url, **kwargs)
    except Exception as exc:  # sqlalchemy raises several types for a bad URL
        raise UsageError(f"cannot use database URL {url!r}: {exc}",
                         hint="pass a SQLAlchemy URL such as sqlite:///fleet.db "
                         "or postgresql+psycopg://user@host/db") from exc
    if url.startswith("sqlite"):
        event.listen(engine, "connect", _sqlite_pragmas)
    SQLModel.metadata.create_all(engine)
    _add_missing_columns(engine)
    _ENGINES[url] = engine
    return engine


def _add_missing_columns(engine: Engine) -> None:
    """Additive migrations: a column added to a table since the database was created is
    added to it (nullable or with its default), so an older database keeps working."""
    inspector = inspect(engine)
    with engine.begin() as conn:
        for table in SQLModel.metadata.sorted_tables:
            existing = {c["name"] for c in inspector.get_columns(table.name)}
            for column in table.columns:
                if column.name in existing:
                    continue
                ddl = column.type.compile(dialect=engine.dialect)
                conn.execute(text(f'ALTER TABLE "{table.name}" ADD COLUMN "{column.name}" {ddl}'))


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.close()
