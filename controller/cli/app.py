"""`fleet`: the controller CLI. One Typer sub-app per noun, composed here, and the one error
boundary: a known error prints ``error:`` and ``hint:`` on stderr and exits non-zero; an unknown
one writes a crash report and says where."""

from __future__ import annotations

import sys
import time
import traceback

import typer
from typer.exceptions import TyperException

from controller import settings
from controller.cli import (
    adapter_cmd,
    dashboard_cmd,
    db_cmd,
    device,
    doctor_cmd,
    fleet_ops,
    group,
    insight_cmd,
    lab_cmd,
    model,
    pki_cmd,
    profile,
    rollouts_cmd,
    settings_cmd,
    telemetry_cmd,
    undeploy_cmd,
)
from controller.core.display import terminal_safe
from controller.errors import FleetError

app = typer.Typer(
    name="fleet",
    help="Roll small language models out to edge devices and watch how they run there.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    pretty_exceptions_show_locals=False,
    add_completion=False,
    # plain click help: `fleet --help` then never imports rich (bench/cli_startup.py)
    rich_markup_mode=None,
)
app.add_typer(device.app, name="device")
app.add_typer(group.app, name="group")
app.add_typer(model.app, name="model")
app.add_typer(adapter_cmd.app, name="adapter")
app.add_typer(profile.app, name="profile")
app.add_typer(lab_cmd.app, name="lab")
app.add_typer(db_cmd.app, name="db")
app.add_typer(rollouts_cmd.app, name="rollouts")
app.add_typer(pki_cmd.app, name="pki")
fleet_ops.register(app)
undeploy_cmd.register(app)
dashboard_cmd.register(app)
telemetry_cmd.register(app)
insight_cmd.register(app)
settings_cmd.register(app)
doctor_cmd.register(app)


@app.callback()
def root(
    ctx: typer.Context,
    db: str = typer.Option(None, "--db", help="SQLAlchemy URL or SQLite path "
                           "(default: $FLEET_DB_URL or $FLEET_HOME/fleet.db)"),
) -> None:
    ctx.obj = {"db": db, "fleet": None}


def _crash_report(exc: BaseException) -> str:
    path = settings.fleet_home() / "crash" / f"crash-{int(time.time())}.txt"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(traceback.format_exception(exc)))
    return str(path)


def main(argv: list[str] | None = None) -> int:
    command = typer.main.get_command(app)
    try:
        result = command.main(args=argv, prog_name="fleet", standalone_mode=False)
    except FleetError as exc:  # messages may quote a device: no control sequences reach the tty
        print(f"error: {terminal_safe(exc.message)}", file=sys.stderr)
        if exc.hint:
            print(f"hint: {terminal_safe(exc.hint)}", file=sys.stderr)
        return exc.exit_code
    except typer.Exit as exc:
        return exc.exit_code
    except typer.Abort:
        print("aborted", file=sys.stderr)
        return 130
    except TyperException as exc:  # usage errors: Typer prints them with the usage line
        show = getattr(exc, "show", None)
        if show:
            show()
        else:
            print(f"error: {exc.format_message()}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # the boundary: never a traceback for the user
        where = _crash_report(exc)
        print(f"error: internal error ({type(exc).__name__}: {terminal_safe(str(exc))})",
              file=sys.stderr)
        print(f"hint: this is a bug; the crash report is at {where}", file=sys.stderr)
        return 70
    return result if isinstance(result, int) else 0


def run() -> None:
    sys.exit(main())
