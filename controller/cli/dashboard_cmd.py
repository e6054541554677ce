"""`fleet dashboard`: the Textual dashboard, or a plain summary when not on a terminal."""

from __future__ import annotations

import sys

import typer

from controller.cli.common import fleet


def register(app: typer.Typer) -> None:
    @app.command("dashboard")
    def dashboard_cmd(
        ctx: typer.Context,
        refresh: float = typer.Option(2.0, "--refresh", help="Seconds between polls."),
        no_dashboard: bool = typer.Option(False, "--no-dashboard",
                                          help="Print the status table instead."),
    ) -> None:
        """Watch the fleet: state, variant, latency, tokens/s, rollouts."""
        if no_dashboard or not sys.stdout.isatty():
            from controller.cli.fleet_ops import render_status

            render_status(fleet(ctx), None, as_json=False, exit_unreachable=False)
            return
        from controller.dashboard.app import make_dashboard

        make_dashboard(fleet(ctx), refresh).run()
