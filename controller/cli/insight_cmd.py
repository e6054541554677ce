"""`fleet telemetry` and `fleet alerts`: what the collected telemetry says."""

from __future__ import annotations

import csv
import io
import sys
from datetime import datetime
from typing import TYPE_CHECKING, Any

import typer

from controller.cli.common import console, esc, fleet, num, print_json
from controller.cli.telemetry_cmd import DEVICE, GROUP, LABEL, devices_for
from controller.errors import UsageError

if TYPE_CHECKING:
    from controller.core.alerts import Alert
    from controller.services.telemetry_query import EnergyFigure, TelemetryReport, TelemetryRow

SEVERITY_COLOURS = {"critical": "red", "warning": "yellow", "info": "cyan"}


def energy_dict(f: EnergyFigure) -> dict[str, Any]:
    return {"meter": f.meter, "measured": f.measured,
            "joules_per_token": _r(f.joules_per_token, 4), "device_wh": _sig(f.wh),
            "power_w": _r(f.power_w, 3), "gco2e": _sig(f.gco2e),
            "grid": sorted(f.grid)}


def _sig(value: float) -> float:
    """Four significant digits: a lab's milligrams of CO2e must not print as 0."""
    return float(f"{value:.4g}")


def _r(value: float | None, digits: int = 2) -> float | None:
    return None if value is None else round(value, digits)


def row_dict(r: TelemetryRow) -> dict[str, Any]:
    return {**r.key, "devices": r.devices, "requests": r.requests, "errors": r.errors,
            "cancelled": r.cancelled, "error_rate": _r(r.error_rate, 4),
            "ttft_ms": {"p50": _r(r.ttft_p50), "p95": _r(r.ttft_p95), "p99": _r(r.ttft_p99)},
            "decode_tokens_per_s": {"p50": _r(r.tps_p50), "p5": _r(r.tps_p5)},
            "prompt_tokens": r.prompt_tokens, "completion_tokens": r.completion_tokens,
            "energy": [energy_dict(f) for f in r.energy],
            "predicted": {"decode_tokens_per_s": _r(r.predicted_tps),
                          "ttft_ms": _r(r.predicted_ttft_ms),
                          "decode_off": _r(r.tps_off, 3), "ttft_off": _r(r.ttft_off, 3)},
            "flag": r.flag or None}


def _energy_cell(figures: list[EnergyFigure], what: str) -> str:
    parts = []
    for f in figures:
        value = {"jpt": f.joules_per_token, "wh": f.wh if f.device_seconds else None,
                 "w": f.power_w, "co2": f.gco2e if f.device_seconds else None}[what]
        if value is not None:
            fmt = {"jpt": "{:.3f}", "wh": "{:.2f}", "w": "{:.1f}", "co2": "{:.2f}"}[what]
            parts.append(f"{fmt.format(value)} {f.meter}")
    return "\n".join(parts) or "-"


def _vs(measured: float | None, predicted: float | None, off: float | None) -> str:
    if predicted is None:
        return num(measured)
    return f"{num(measured)} / {predicted:.1f}" + (f" ({off:+.0%})" if off is not None else "")


def print_report(rep: TelemetryReport) -> None:
    from rich.table import Table

    key_cols = list(rep.rows[0].key) if rep.rows else [rep.by]
    table = Table(*key_cols, "req", "err", "TTFT p50/p95/p99 ms", "tok/s p50 / pred",
                  "tok/s p5", "W", "J/tok", "Wh", "gCO2e", title_justify="left",
                  title=f"last {_dur(rep.since_s)} from {rep.source} ({rep.accuracy})")
    for r in rep.rows:
        ttft = "/".join(num(v, "{:.0f}") for v in (r.ttft_p50, r.ttft_p95, r.ttft_p99))
        table.add_row(*(esc(v) for v in r.key.values()), str(r.requests),
                      f"{r.errors}" + (f" ({r.error_rate:.0%})" if r.error_rate else ""),
                      ttft, _vs(r.tps_p50, r.predicted_tps, r.tps_off), num(r.tps_p5),
                      _energy_cell(r.energy, "w"), _energy_cell(r.energy, "jpt"),
                      _energy_cell(r.energy, "wh"), _energy_cell(r.energy, "co2"))
    console.print(table)
    for r in rep.rows:
        if r.flag:
            console.print(f"[yellow]{esc(' '.join(r.key.values()))}: {esc(r.flag)}[/]")


def _dur(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds / size:g} {unit}"
    return f"{seconds:g} s"


def print_csv(rep: TelemetryReport) -> None:
    out = io.StringIO()
    writer = csv.writer(out)
    keys = list(rep.rows[0].key) if rep.rows else [rep.by]
    writer.writerow([*keys, "requests", "errors", "cancelled", "ttft_p50_ms", "ttft_p95_ms",
                     "ttft_p99_ms", "decode_tps_p50", "decode_tps_p5", "predicted_tps",
                     "predicted_ttft_ms", "meter", "measured", "power_w", "joules_per_token",
                     "device_wh", "gco2e", "flag"])
    for r in rep.rows:
        base = [*r.key.values(), r.requests, r.errors, r.cancelled, r.ttft_p50, r.ttft_p95,
                r.ttft_p99, r.tps_p50, r.tps_p5, r.predicted_tps, r.predicted_ttft_ms]
        # one line per meter: figures of different meters are never added up
        figures: list[EnergyFigure | None] = [*r.energy] or [None]
        for f in figures:
            writer.writerow([*base, *([f.meter, f.measured, f.power_w, f.joules_per_token,
                                       f.wh, f.gco2e] if f else ["", "", "", "", "", ""]),
                             r.flag])
    sys.stdout.write(out.getvalue())


def alert_dict(a: Alert) -> dict[str, Any]:
    return {"kind": a.kind, "severity": a.severity, "device": a.device, "group": a.group,
            "message": a.message, "hint": a.hint,
            "since": datetime.fromtimestamp(a.since).astimezone().isoformat()
            if a.since else None, **({"details": a.details} if a.details else {})}


def register(app: typer.Typer) -> None:
    @app.command("telemetry")
    def telemetry_cmd(
        ctx: typer.Context,
        group: str = GROUP,
        device: list[str] = DEVICE,
        label: list[str] = LABEL,
        model: str = typer.Option(None, "--model", "-m", help="Only this catalog model."),
        since: str = typer.Option("1h", "--since", help="Window: 15m, 1h, 7d, ..."),
        by: str = typer.Option("device", "--by", help="device, variant or profile."),
        as_json: bool = typer.Option(False, "--json"),
        as_csv: bool = typer.Option(False, "--csv"),
    ) -> None:
        """Requests, errors, TTFT and speed percentiles, power, energy and carbon, beside the
        selector's predictions (--by variant compares variants on the same profile)."""
        if as_json and as_csv:
            raise UsageError("give --json or --csv, not both")
        from controller.services import telemetry_query

        f = fleet(ctx)
        rep = telemetry_query.report(f, devices_for(f, group, device, label),
                                     telemetry_query.parse_since(since), by, model)
        if as_json:
            print_json({"version": 1, "by": rep.by, "since_s": rep.since_s, "source": rep.source,
                        "accuracy": rep.accuracy, "rows": [row_dict(r) for r in rep.rows]})
        elif as_csv:
            print_csv(rep)
        elif not rep.rows:
            console.print(f"no telemetry in the last {_dur(rep.since_s)}; `fleet collect` "
                          "gathers it (or run `fleet monitor`)")
        else:
            print_report(rep)

    @app.command("alerts")
    def alerts_cmd(
        ctx: typer.Context,
        group: str = GROUP,
        device: list[str] = DEVICE,
        label: list[str] = LABEL,
        as_json: bool = typer.Option(False, "--json"),
    ) -> None:
        """Unreachable devices, crash loops, throttling, drift, SLO breaches, telemetry gaps
        and predictions far off, from the collected telemetry."""
        from controller.services import alerting

        f = fleet(ctx)
        found = alerting.alerts(f, devices_for(f, group, device, label))
        if as_json:
            print_json({"version": 1, "alerts": [alert_dict(a) for a in found]})
            return
        if not found:
            console.print("no alerts")
            return
        from rich.table import Table

        table = Table("severity", "device", "alert", "what", "hint")
        for a in found:
            c = SEVERITY_COLOURS[a.severity]
            table.add_row(f"[{c}]{a.severity}[/]", a.device, a.kind, esc(a.message),
                          esc(a.hint))
        console.print(table)
