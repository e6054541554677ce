"""`fleet db status|upgrade|downgrade`: the controller database's schema."""

from __future__ import annotations

import typer

from controller.errors import DeployFailed

app = typer.Typer(help="The controller database's schema: version, upgrade, downgrade.",
                  no_args_is_help=True, rich_markup_mode=None)


def _db(ctx: typer.Context) -> str | None:
    db: str | None = ctx.find_root().obj.get("db")
    return db


def _show(report: object, as_json: bool) -> None:
    from controller.cli.common import console, print_json
    from controller.services.database import DatabaseReport

    assert isinstance(report, DatabaseReport)
    s = report.status
    if as_json:
        print_json({"version": 1, "url": report.url, "current": s.current or None,
                    "head": s.head, "pending": s.pending, "drift": report.drift})
        return
    current = {"": "empty (no tables)", "legacy": "unversioned (edgefleet 0.1.0)"}.get(
        s.current, s.current)
    console.print(f"database: {report.url}")
    console.print(f"schema:   {current}" + ("  (up to date)" if s.up_to_date else ""))
    if s.pending:
        console.print(f"pending:  {', '.join(s.pending)}  (any command applies them; or "
                      "`fleet db upgrade`)")
    if s.up_to_date:
        console.print("check:    " + ("the tables match the code" if not report.drift
                                      else "DIFFERS from the code:"))
        for line in report.drift:
            console.print(f"  - {line}")


@app.command("status")
def status_cmd(ctx: typer.Context, as_json: bool = typer.Option(False, "--json")) -> None:
    """The schema revision, what an upgrade would apply, and whether the tables match the
    code (exit 1 when they differ)."""
    from controller.services import database

    report = database.report(_db(ctx))
    _show(report, as_json)
    if report.drift:
        raise DeployFailed(f"the database schema differs from revision {report.status.head}",
                           hint="a table was changed by hand or a migration failed half-way; "
                           "restore the backup beside the database file, or ask for help")


@app.command("upgrade")
def upgrade_cmd(ctx: typer.Context,
                to: str = typer.Option("head", "--to", help="Revision to upgrade to."),
                as_json: bool = typer.Option(False, "--json")) -> None:
    """Apply pending migrations (every command also does this on start). A SQLite database
    is first copied beside itself (fleet.db.<revision>.<time>.bak)."""
    from controller.services import database

    _show(database.upgrade(_db(ctx), to), as_json)


@app.command("downgrade")
def downgrade_cmd(ctx: typer.Context,
                  to: str = typer.Argument(..., help="Revision to go back to ('base': "
                                           "no tables)."),
                  as_json: bool = typer.Option(False, "--json")) -> None:
    """Undo migrations down to a revision, e.g. before running an older edgefleet on the
    same database. A SQLite database is first copied beside itself."""
    from controller.services import database

    _show(database.downgrade(_db(ctx), to), as_json)
