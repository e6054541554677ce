"""`fleet doctor`: what would stop a deploy, on the controller and each device, with fixes."""

from __future__ import annotations

from typing import TYPE_CHECKING

import typer

from controller.cli.common import console, db_override, fleet, print_json

if TYPE_CHECKING:
    from controller.services.doctoring import DoctorReport

COLUMNS = ("ssh", "agent", "version", "cert", "clock", "disk", "database")
LABEL = typer.Option(None, "--label", "-l", help="Only devices with label k=v (repeatable).")
COLOURS = {"ok": "green", "warn": "yellow", "problem": "red", "unknown": "dim"}


def _render(report: DoctorReport) -> None:
    from rich.table import Table

    from agent import __version__
    from controller.core.doctor import CONTROLLER, OK

    table = Table("", *COLUMNS)
    targets = [CONTROLLER, *report.devices]
    by = {(c.target, c.what): c for c in report.checks}
    for target in targets:
        cells = []
        for what in COLUMNS:
            check = by.get((target, what))
            if target == CONTROLLER and what == "version":
                cells.append(__version__)
            elif target == CONTROLLER and what == "clock":
                cells.append("reference")
            elif check is None:
                cells.append("-")
            else:
                cells.append(f"[{COLOURS[check.level]}]{check.cell}[/]")
        table.add_row(target, *cells)
    console.print(table)
    findings = [c for c in report.checks if c.level != OK]
    for c in findings:
        colour = COLOURS[c.level]
        console.print(f"[{colour}]{c.level}[/] {c.target} {c.what}: {c.detail}"
                      + (f"\n    fix: {c.fix}" if c.fix else ""), highlight=False)
    problems = sum(c.level == "problem" for c in report.checks)
    console.print("nothing stops a deploy" if not problems else
                  f"{problems} problem{'s' if problems > 1 else ''} would stop a deploy",
                  highlight=False)


def register(app: typer.Typer) -> None:
    @app.command("doctor")
    def doctor_cmd(
        ctx: typer.Context,
        group: str = typer.Option(None, "--group", "-g", help="Devices of this group "
                                  "(default: every device)."),
        label: list[str] = LABEL,
        as_json: bool = typer.Option(False, "--json"),
    ) -> None:
        """What would stop a deploy, for the controller and each device, each with its fix:
        database driver and schema, certificates, SSH and host keys, the agent and its
        version, clock skew, free disk. Exit 0 when nothing would, 1 on a problem, 4 when
        the only problems are devices that cannot be reached."""
        from controller.cli.telemetry_cmd import devices_for
        from controller.errors import DeployFailed, DevicesUnreachable
        from controller.services.doctoring import examine

        report = examine(db_override(ctx), lambda: fleet(ctx),
                         lambda f: devices_for(f, group, None, label))
        if as_json:
            from agent import __version__

            print_json({"version": 1, "controller_version": __version__,
                        "exit_code": report.exit_code,
                        "checks": [{"target": c.target, "check": c.what, "level": c.level,
                                    "detail": c.detail, "fix": c.fix,
                                    "unreachable": c.unreachable} for c in report.checks]})
        else:
            _render(report)
        problems = [c for c in report.checks if c.level == "problem"]
        if not problems:
            return
        first = problems[0]
        where = f"{first.target} {first.what}: {first.detail}"
        if report.exit_code == 1:
            raise DeployFailed(f"{len(problems)} problem(s) would stop a deploy; {where}",
                               hint=first.fix)
        raise DevicesUnreachable(f"{len(problems)} device check(s) could not reach the "
                                 f"device; {where}", hint=first.fix)
