"""`fleet collect`, `fleet monitor`: telemetry from the agents into the database."""

from __future__ import annotations

import signal
import sys
import threading
import time
from typing import TYPE_CHECKING

import typer

from controller.cli.common import console, esc, fleet, print_json
from controller.cli.fleet_ops import select_devices
from controller.core.telemetry_records import CONTACT_TIMEOUT_S
from controller.errors import DevicesUnreachable, UsageError

if TYPE_CHECKING:  # gRPC and the collector load when a command contacts devices
    from controller.adapters.tables import Device
    from controller.services.collecting import PassReport
    from controller.services.context import Fleet

GROUP = typer.Option(None, "--group", "-g", help="Devices of this group (default: all).")
DEVICE = typer.Option(None, "--device", "-d", help="This device (repeatable).")
LABEL = typer.Option(None, "--label", "-l", help="Only devices with label k=v (repeatable).")
TIMEOUT = typer.Option(CONTACT_TIMEOUT_S, "--timeout", help="Seconds one device may take.")
CONCURRENCY = typer.Option(32, "--concurrency", help="Devices contacted at once.")


def devices_for(f: Fleet, group: str | None, device: list[str] | None,
                label: list[str] | None) -> list[Device]:
    """The devices named, or every device when none is."""
    if not group and not device and not label:
        return f.inventory.list_devices()
    return select_devices(f, group, device, label)


def _check(concurrency: int, timeout: float) -> None:
    if not 1 <= concurrency <= 512 or not 0.1 <= timeout <= 600:
        raise UsageError("--concurrency must be 1..512 and --timeout 0.1..600 s",
                         hint="e.g. --concurrency 32 --timeout 5")


def _report_dict(r: PassReport) -> dict[str, object]:
    return {"version": 1, "devices": r.devices, "reached": sorted(r.reached),
            "unreachable": r.unreachable, "incomplete": sorted(r.incomplete),
            "requests": r.requests, "samples": r.samples,
            "gaps": [{"device": d, "kind": k} for d, k in r.gaps],
            "seconds": round(r.seconds, 3)}


def register(app: typer.Typer) -> None:
    @app.command("collect")
    def collect_cmd(
        ctx: typer.Context,
        group: str = GROUP,
        device: list[str] = DEVICE,
        label: list[str] = LABEL,
        timeout: float = TIMEOUT,
        concurrency: int = CONCURRENCY,
        as_json: bool = typer.Option(False, "--json"),
    ) -> None:
        """One collection pass (cron-friendly): exit 4 when a device could not be reached."""
        from controller.services import retention
        from controller.services.collecting import collect_once

        _check(concurrency, timeout)
        f = fleet(ctx)
        devices = devices_for(f, group, device, label)
        report = collect_once(f, devices, concurrency, timeout)
        retention.prune(f)
        if as_json:
            print_json(_report_dict(report))
        else:
            console.print(f"{len(report.reached)} of {report.devices} devices reached in "
                          f"{report.seconds:.2f} s: {report.requests} requests, "
                          f"{report.samples} samples stored"
                          + (f"; gaps: {', '.join(f'{d} {k}' for d, k in report.gaps)}"
                             if report.gaps else "")
                          + (f"; more waiting on {', '.join(report.incomplete)}"
                             if report.incomplete else ""))
            if report.unreachable:
                from rich.table import Table

                table = Table("device", "unreachable because")
                for name, why in sorted(report.unreachable.items()):
                    table.add_row(name, esc(why))
                console.print(table)
        if report.unreachable:
            first = sorted(report.unreachable)[0]
            raise DevicesUnreachable(f"{len(report.unreachable)} of {report.devices} devices "
                             f"unreachable; {report.unreachable[first]}",
                             hint="their records wait on the device; the next pass "
                             "collects them (the gap is recorded)")

    @app.command("monitor")
    def monitor_cmd(
        ctx: typer.Context,
        group: str = GROUP,
        device: list[str] = DEVICE,
        label: list[str] = LABEL,
        interval: float = typer.Option(5.0, "--interval", help="Seconds between passes."),
        timeout: float = TIMEOUT,
        concurrency: int = CONCURRENCY,
        metrics: str = typer.Option("", "--metrics", help="Serve Prometheus metrics on "
                                    "HOST:PORT, e.g. 127.0.0.1:9464."),
        quiet: bool = typer.Option(False, "--quiet", "-q", help="No line per pass."),
    ) -> None:
        """Collect continuously (bounded concurrency, a deadline per device); Ctrl-C stops."""
        from controller.services import monitoring

        _check(concurrency, timeout)
        if not 0.2 <= interval <= 3600:
            raise UsageError("--interval must be 0.2..3600 s", hint="the default is 5")
        f = fleet(ctx)
        devices_for(f, group, device, label)  # bad selections fail now, not in the loop
        stop = threading.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: stop.set())
        observer = None
        server = None
        if metrics:
            from controller.services.prometheus_export import FleetMetrics, serve

            exporter = FleetMetrics(f)
            server = serve(exporter, metrics)
            observer = exporter.observe
            print(f"metrics on http://{metrics}/metrics", file=sys.stderr)

        def tick(r: PassReport) -> None:
            if not quiet:
                print(f"{time.strftime('%H:%M:%S')} {len(r.reached)}/{r.devices} reached, "
                      f"{r.requests} requests, {r.samples} samples"
                      + (f", unreachable: {', '.join(sorted(r.unreachable))}"
                         if r.unreachable else "")
                      + (f", gaps: {', '.join(f'{d} {k}' for d, k in r.gaps)}"
                         if r.gaps else ""), file=sys.stderr, flush=True)

        try:
            monitoring.run(f, lambda: devices_for(f, group, device, label), stop,
                           interval, concurrency, timeout, observer, tick)
        finally:
            if server is not None:
                server.shutdown()
