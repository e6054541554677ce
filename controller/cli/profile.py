"""`fleet profile list|show`."""

from __future__ import annotations

from dataclasses import asdict
from typing import TYPE_CHECKING

import typer

from controller.cli.common import console, mib, print_json

if TYPE_CHECKING:
    from controller.core.models import Profile

app = typer.Typer(help="Hardware profiles of device classes.", no_args_is_help=True,
                  rich_markup_mode=None)
UNKNOWN = "unknown"


@app.command("list")
def list_(as_json: bool = typer.Option(False, "--json")) -> None:
    """List known profiles (shipped and your own)."""
    from rich.table import Table

    from controller.adapters.data_files import load_profiles

    profiles = load_profiles()
    if as_json:
        print_json({"version": 1, "profiles": [asdict(p) for p in profiles.values()]})
        return
    table = Table("name", "kind", "arch", "cores", "RAM", "reserve", "GB/s", "GPU", "NPU")
    for p in sorted(profiles.values(), key=lambda p: (p.kind, p.name)):
        table.add_row(p.name, p.kind, p.arch, str(p.cores), mib(p.ram_bytes),
                      mib(p.reserve_bytes), f"{p.bandwidth_gbps:g}", p.gpu or "-", p.npu or "-")
    console.print(table)


def _size(n: int) -> str:
    from controller.core.models import GIB

    return f"{n / GIB:.1f} GiB" if n >= GIB else mib(n)


def _or_unknown(value: float, fmt: str) -> str:
    return fmt.format(value) if value else UNKNOWN


def describe(p: Profile) -> list[tuple[str, str]]:
    """The profile as a person reads it: units, lists joined, unknowns said."""
    cpu = f"{p.arch}, {p.cores} cores"
    if p.threads:
        cpu += f" ({p.threads} used by the runtime)"
    if p.clock_ghz:
        cpu += f", {p.clock_ghz:g} GHz"
    if p.simd_bits and p.simd_pipes:
        cpu += f", {p.simd_pipes:g} x {p.simd_bits}-bit SIMD pipes"
    bandwidth = [f"{p.bandwidth_gbps:g} GB/s spec"]
    if p.bandwidth_measured_gbps:
        bandwidth.append(f"{p.bandwidth_measured_gbps:g} GB/s measured"
                         + (f" ({p.bandwidth_method})" if p.bandwidth_method else ""))
    if p.decode_bandwidth_gbps:
        bandwidth.append(f"{p.decode_bandwidth_gbps:g} GB/s in CPU decode (published run)")
    gpu = p.gpu or "none"
    if p.gpu_note:
        gpu += f"; {p.gpu_note}"
    if p.accelerated:
        gpu += f"; the runtime offloads to it ({p.gpu_backend or 'backend unknown'})"
        gpu += f", {p.gpu_tflops:g} TFLOPS" if p.gpu_tflops else ", TFLOPS unknown"
        if p.gpu_clock_ghz:
            gpu += f" at {p.gpu_clock_ghz:g} GHz"
    power = (f"idle {_or_unknown(p.idle_w, '{:g} W')}, "
             f"load {_or_unknown(p.load_w, '{:g} W')}")
    if p.power_mode:
        power += f" (power mode {p.power_mode})"
    thermal = f"{p.cooling} cooling" if p.cooling else "cooling unknown"
    if p.throttled_clock_ghz:
        thermal += f"; {p.throttled_clock_ghz:g} GHz sustained when passively cooled"
    rows = [
        ("name", f"{p.name}: {p.title}"),
        ("kind", p.kind + (f" of {p.scale_of}" if p.scale_of else "")),
        ("cpu", cpu),
        ("isa", ", ".join(p.isa) or UNKNOWN),
        ("memory", f"{_size(p.ram_bytes)} RAM, {_size(p.reserve_bytes)} reserved, "
                   f"{_size(p.usable_bytes)} usable"
                   + ("; one pool shared with the GPU" if p.unified_memory else "")),
        ("bandwidth", ", ".join(bandwidth)),
        ("gpu", gpu),
        ("npu", p.npu or "none"),
        ("compute", _or_unknown(p.compute_gflops, "{:g} GFLOPS peak")),
        ("power", power),
        ("thermal", thermal),
        ("disk", _or_unknown(p.disk_bytes / 1e9, "{:g} GB")),
    ]
    if p.decode_efficiency:
        rows.append(("calibrated", f"decode reaches {p.decode_efficiency:.2f} of its bandwidth"))
    if p.runtimes:
        rows.append(("runtimes", ", ".join(p.runtimes)))
    return rows


@app.command("show")
def show(name: str, as_json: bool = typer.Option(False, "--json")) -> None:
    """Show one profile with its sources."""
    from controller.adapters.data_files import load_profile

    profile = load_profile(name)
    if as_json:
        print_json({"version": 1, **asdict(profile)})
        return
    width = max(len(k) for k, _ in describe(profile))
    for key, value in describe(profile):
        console.print(f"[bold]{key + ':':{width + 1}}[/] {value}", highlight=False)
    console.print("[bold]sources:[/]")
    for s in profile.sources:
        console.print(f"  - {s}", highlight=False, markup=False)
