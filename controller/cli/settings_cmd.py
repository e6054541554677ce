"""`fleet slo`, `fleet carbon`, `fleet retention`: monitoring settings in the database."""

from __future__ import annotations

from typing import TYPE_CHECKING

import typer

from controller.cli.common import console, fleet, print_json
from controller.errors import UsageError

if TYPE_CHECKING:
    from controller.services.context import Fleet

slo = typer.Typer(help="Service level objectives per group (or fleet-wide): p95 TTFT, "
                  "minimum decode tok/s. Breaches are alerts.", no_args_is_help=True,
                  rich_markup_mode=None)
carbon = typer.Typer(help="Grid carbon intensity (gCO2e/kWh) per fleet, group or label, for "
                     "the gCO2e figures.", no_args_is_help=True, rich_markup_mode=None)
GROUP = typer.Option(None, "--group", "-g", help="This group (default: the whole fleet).")
LABEL = typer.Option(None, "--label", "-l", help="Devices with this label k=v.")


def _show(f: Fleet, keys: set[str], as_json: bool, default: str = "") -> None:
    from rich.table import Table

    from controller.services import monitor_settings as ms

    f_rows = ms.listing(f, keys)
    if as_json:
        print_json({"version": 1, "settings": [{"scope": r.scope, "key": r.key,
                                                "value": r.value} for r in f_rows]})
        return
    table = Table("scope", "setting", "value")
    for r in f_rows:
        table.add_row(r.scope, r.key, f"{r.value:g}")
    console.print(table)
    if default:
        console.print(default)


@slo.command("set")
def slo_set(ctx: typer.Context, group: str = GROUP,
            p95_ttft_ms: float = typer.Option(None, "--p95-ttft-ms",
                                              help="Alert when p95 TTFT exceeds this."),
            min_tps: float = typer.Option(None, "--min-tps",
                                          help="Alert when median decode tok/s is below.")
            ) -> None:
    """Set the group's limits (alerts judge the last 15 minutes)."""
    if p95_ttft_ms is None and min_tps is None:
        raise UsageError("nothing to set", hint="e.g. fleet slo set --group kiosks "
                         "--p95-ttft-ms 800 --min-tps 5")
    from controller.services import monitor_settings as ms

    f = fleet(ctx)
    if group:
        f.inventory.devices_in_group(group)  # an unknown group is an error, not a no-op
    values: dict[str, float | None] = {}
    if p95_ttft_ms is not None:
        values[ms.SLO_P95_TTFT] = p95_ttft_ms
    if min_tps is not None:
        values[ms.SLO_MIN_TPS] = min_tps
    ms.put(f, ms.scope_of(group, None), values)
    console.print(f"SLO set for {ms.scope_of(group, None)}")


@slo.command("clear")
def slo_clear(ctx: typer.Context, group: str = GROUP) -> None:
    """Remove the group's limits."""
    from controller.services import monitor_settings as ms

    ms.put(fleet(ctx), ms.scope_of(group, None), {ms.SLO_P95_TTFT: None, ms.SLO_MIN_TPS: None})


@slo.command("list")
def slo_list(ctx: typer.Context, as_json: bool = typer.Option(False, "--json")) -> None:
    """The limits set, per scope."""
    from controller.services import monitor_settings as ms

    _show(fleet(ctx), {ms.SLO_P95_TTFT, ms.SLO_MIN_TPS}, as_json)


@carbon.command("set")
def carbon_set(ctx: typer.Context,
               g_per_kwh: float = typer.Argument(..., help="Grid intensity, gCO2e per kWh."),
               group: str = GROUP, label: str = LABEL) -> None:
    """Set the grid's carbon intensity for the fleet, a group or a label."""
    if not 0 < g_per_kwh < 3000:
        raise UsageError(f"{g_per_kwh:g} gCO2e/kWh is not a grid intensity",
                         hint="grids range from ~10 (hydro) to ~1,000 (coal) g/kWh")
    from controller.services import monitor_settings as ms

    ms.put(fleet(ctx), ms.scope_of(group, label), {ms.GRID: g_per_kwh})


@carbon.command("clear")
def carbon_clear(ctx: typer.Context, group: str = GROUP, label: str = LABEL) -> None:
    """Remove a grid intensity."""
    from controller.services import monitor_settings as ms

    ms.put(fleet(ctx), ms.scope_of(group, label), {ms.GRID: None})


@carbon.command("list")
def carbon_list(ctx: typer.Context, as_json: bool = typer.Option(False, "--json")) -> None:
    """The intensities set, per scope, and the default."""
    from controller.services import monitor_settings as ms

    _show(fleet(ctx), {ms.GRID}, as_json, f"default: {ms.DEFAULT_GRID_G_PER_KWH:g} g/kWh (world "
          "average 2019, IEA Global Energy & CO2 Status Report)")


def register(app: typer.Typer) -> None:
    app.add_typer(slo, name="slo")
    app.add_typer(carbon, name="carbon")

    @app.command("retention")
    def retention_cmd(
        ctx: typer.Context,
        raw_days: float = typer.Option(None, "--raw-days", help="Raw records and samples."),
        minute_days: float = typer.Option(None, "--minute-days", help="Per-minute rollups."),
        hour_days: float = typer.Option(None, "--hour-days", help="Per-hour rollups."),
        as_json: bool = typer.Option(False, "--json"),
    ) -> None:
        """Show or set how long telemetry is kept (defaults 7, 90 and 730 days)."""
        from controller.services import monitor_settings as ms

        f = fleet(ctx)
        values = {k: v for k, v in (("raw_days", raw_days), ("minute_days", minute_days),
                                    ("hour_days", hour_days)) if v is not None}
        if values:
            keep = {**ms.load(f).retention(), **values}
            if not keep["raw_days"] <= keep["minute_days"] <= keep["hour_days"]:
                raise UsageError("retention must grow: raw <= minute <= hour days",
                                 hint="e.g. --raw-days 7 --minute-days 90 --hour-days 730")
            ms.put(f, "fleet", dict(values))
        keep = ms.load(f).retention()
        if as_json:
            print_json({"version": 1, **keep})
        else:
            console.print(f"raw {keep['raw_days']:g} d, per-minute {keep['minute_days']:g} d, "
                          f"per-hour {keep['hour_days']:g} d")
