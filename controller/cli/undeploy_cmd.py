"""`fleet undeploy MODEL`: take one model off devices that run several (docs/cli.md)."""

from __future__ import annotations

import typer

from controller.cli.common import console, esc, fleet, print_json
from controller.cli.fleet_ops import DEVICE, GROUP, LABEL, select_devices
from controller.errors import DeployFailed, DevicesUnreachable, UsageError

STYLE = {"removed": "green", "absent": "dim", "refused": "yellow", "unreachable": "red",
         "failed": "red"}


def register(app: typer.Typer) -> None:
    @app.command("undeploy")
    def undeploy_cmd(
        ctx: typer.Context,
        model: str = typer.Argument(..., help="The model's name (not an alias)."),
        group: str = GROUP,
        device: list[str] = DEVICE,
        label: list[str] = LABEL,
        allow_empty: bool = typer.Option(False, "--allow-empty", help="Take it off a device "
                                         "even when it is the only model there."),
        as_json: bool = typer.Option(False, "--json"),
    ) -> None:
        """Take one model off each device, leaving its other models serving."""
        if not model.strip():
            raise UsageError("no model named", hint="fleet undeploy MODEL --group G")
        from controller.services.undeploying import undeploy

        f = fleet(ctx)
        outcomes = undeploy(f, select_devices(f, group, device, label), model, allow_empty)
        if as_json:
            print_json({"version": 1, "model": model, "outcomes": [
                {"device": o.device, "status": o.status, "reason": o.reason,
                 "hint": o.hint or None} for o in outcomes]})
        else:
            for o in outcomes:
                hint = f" [dim]({esc(o.hint)})[/]" if o.hint else ""
                console.print(f"[bold]{esc(o.device)}[/]: [{STYLE[o.status]}]{o.status}[/] "
                              f"{esc(o.reason)}{hint}")
        bad = [o for o in outcomes if o.status in ("refused", "failed", "unreachable")]
        if bad and all(o.status == "unreachable" for o in bad):
            raise DevicesUnreachable(f"{len(bad)} of {len(outcomes)} devices unreachable; "
                                     f"{bad[0].device}: {bad[0].reason}", hint=bad[0].hint)
        if bad:
            raise DeployFailed(f"{model} stays on {len(bad)} of {len(outcomes)} devices; "
                               f"{bad[0].device}: {bad[0].reason}",
                               hint=bad[0].hint or "see each device's line above")
