"""SQLModel engine: one per process. SQLite gets WAL and foreign keys; any other URL as is.

The schema is Alembic's (``controller.migrations``): opening a database brings it to the
code's revision (``controller.adapters.schema``), never past it.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import ArgumentError, OperationalError
from sqlmodel import create_engine

from controller.adapters import schema
from controller.errors import UsageError

_ENGINES: dict[str, Engine] = {}
DRIVER_HINTS = {
    "psycopg": "pip install 'edgefleet[postgres]'",
    "psycopg2": "pip install psycopg2-binary, or use postgresql+psycopg:// with "
    "pip install 'edgefleet[postgres]'",
}


def safe_url(url: str) -> str:
    """The URL as it may be shown: never with its password."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return url.split("@")[-1] if "@" in url else url


def engine_for(url: str, migrate: bool = True) -> Engine:
    """The process's engine for ``url``; with ``migrate`` the schema is brought up to date
    first (``fleet db`` opens without, to report and act on it itself)."""
    if url in _ENGINES:
        engine = _ENGINES[url]
        if migrate:  # one query when current; the database may have changed meanwhile
            _ensure_current(engine, url)
        return engine
    kwargs: dict[str, Any] = {}
    if url.startswith("sqlite:///"):
        path = Path(url.removeprefix("sqlite:///"))
        path.parent.mkdir(parents=True, exist_ok=True)
        kwargs["connect_args"] = {"check_same_thread": False, "timeout": 30}
    try:
        engine = create_engine(url, **kwargs)
    except ModuleNotFoundError as exc:
        raise UsageError(f"no driver for database URL {safe_url(url)}: {exc}",
                         hint=DRIVER_HINTS.get(exc.name or "", "install the SQLAlchemy "
                                               "driver the URL names")) from exc
    except Exception as exc:  # sqlalchemy raises several types for a bad URL
        raise UsageError(f"cannot use database URL {safe_url(url)}: "
                         f"{str(exc).replace(url, safe_url(url))}",
                         hint="pass a SQLAlchemy URL such as sqlite:///fleet.db "
                         "or postgresql+psycopg://user@host/db") from exc
    if url.startswith("sqlite"):
        event.listen(engine, "connect", _sqlite_pragmas)
    if migrate:
        _ensure_current(engine, url)
    _ENGINES[url] = engine
    return engine


# Two commands opening a fresh SQLite database at once (two first deploys) migrate it once,
# the second waiting on the migration lock (controller.adapters.schema). Under heavy load CI saw
# the second fail "database is locked" once at this point, past SQLite's 30 s busy wait, with
# the cause not pinned down: opening is tried again, within a bound, before giving up.
OPEN_RETRY_S = 60.0


def _ensure_current(engine: Engine, url: str) -> None:
    deadline = time.monotonic() + OPEN_RETRY_S
    while True:
        try:
            schema.ensure_current(engine, url)
            return
        except OperationalError as exc:
            if ("locked" not in str(exc) or not url.startswith("sqlite")
                    or time.monotonic() > deadline):
                raise
            time.sleep(0.5)


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.close()
