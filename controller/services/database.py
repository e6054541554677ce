"""`fleet db`: the schema version of the controller's database, upgrades, downgrades, checks.

Opened without the automatic upgrade every other command does, so an operator can look
before anything changes (``fleet db status``) and move the schema on purpose.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError

from controller import settings
from controller.adapters import schema
from controller.adapters.db import engine_for, safe_url
from controller.errors import FleetError, UsageError


@dataclass(frozen=True)
class DatabaseReport:
    url: str  # without its password
    status: schema.SchemaStatus
    drift: list[str]  # empty: the live schema is what the code defines


def _engine(db: str | None) -> tuple[str, Engine]:
    url = settings.db_url(db)
    return url, engine_for(url, migrate=False)


def report(db: str | None, check_drift: bool = True) -> DatabaseReport:
    url, engine = _engine(db)
    try:
        found = schema.status(engine)
        drift = schema.drift(engine) if check_drift and found.up_to_date else []
    except SQLAlchemyError as exc:
        raise FleetError(f"cannot read database {safe_url(url)}: {exc.__class__.__name__}",
                         hint="check FLEET_DB_URL / --db") from exc
    return DatabaseReport(safe_url(url), found, drift)


def upgrade(db: str | None, target: str = "head") -> DatabaseReport:
    url, engine = _engine(db)
    _known(target)
    schema.upgrade(engine, url, target)
    return report(db)


def downgrade(db: str | None, target: str) -> DatabaseReport:
    url, engine = _engine(db)
    _known(target)
    schema.downgrade(engine, url, target)
    return report(db, check_drift=False)


def _known(target: str) -> None:
    if target in ("head", "base"):
        return
    known = [s.revision for s in schema.scripts().walk_revisions()]
    if target not in known:
        raise UsageError(f"no schema revision {target!r}",
                         hint=f"known: base, {', '.join(reversed(known))}, head "
                         "(`fleet db status` shows the current one)")
