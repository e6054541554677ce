"""`fleet profile list|show`."""

from __future__ import annotations

from dataclasses import asdict

import typer
from rich.table import Table

from controller.adapters.data_files import load_profile, load_profiles
from controller.cli.common import console, mib, print_json

app = typer.Typer(help="Hardware profiles of device classes.", no_args_is_help=True)


@app.command("list")
def list_(as_json: bool = typer.Option(False, "--json")) -> None:
    """List known profiles (shipped and your own)."""
    profiles = load_profiles()
    if as_json:
        print_json([asdict(p) for p in profiles.values()])
        return
    table = Table("name", "kind", "arch", "cores", "RAM", "reserve", "GB/s", "GPU", "NPU")
    for p in sorted(profiles.values(), key=lambda p: (p.kind, p.name)):
        table.add_row(p.name, p.kind, p.arch, str(p.cores), mib(p.ram_bytes),
                      mib(p.reserve_bytes), f"{p.bandwidth_gbps:g}", p.gpu or "-", p.npu or "-")
    console.print(table)


@app.command("show")
def show(name: str, as_json: bool = typer.Option(False, "--json")) -> None:
    """Show one profile with its sources."""
    data = asdict(load_profile(name))
    if as_json:
        print_json(data)
        return
    for key, value in data.items():
        if key == "sources":
            console.print("[bold]sources[/]:")
            for s in value:
                console.print(f"  - {s}")
        else:
            console.print(f"[bold]{key}[/]: {value}")
