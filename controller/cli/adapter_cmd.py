"""`fleet adapter add|list`: LoRA adapters for catalog models."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from controller.cli.common import console, esc, fleet, mib, print_json
from controller.errors import DeployFailed

if TYPE_CHECKING:
    from controller.adapters.tables import Device
    from controller.core.adapter_plan import AdapterTarget
    from controller.core.models import ModelSpec
    from controller.core.select import Request
    from controller.services.context import Fleet
    from controller.services.deploying import DeployOptions
    from controller.services.ports import DeviceJob

app = typer.Typer(help="LoRA adapters (GGUF) on top of catalog models.", no_args_is_help=True,
                  rich_markup_mode=None)


@app.command("add")
def add(ctx: typer.Context, name: str, path: Path,
        base: str = typer.Option(..., "--base", help="the catalog model it was trained on"),
        replace: bool = typer.Option(False, "--replace",
                                     help="make this file the new version of NAME")) -> None:
    """Check an adapter (PATH: GGUF, as llama.cpp's convert_lora_to_gguf.py writes it)
    against its base model's header and keep it for deploys."""
    from controller.services import lora_registry

    e = lora_registry.add(fleet(ctx), name, base, path, replace)
    console.print(f"adapter {e.name} for {e.base}: {mib(e.size_bytes)}, rank {e.rank}, alpha "
                  f"{e.alpha:g}, {e.architecture} ({', '.join(e.targets)}), sha256 "
                  f"{e.sha256[:16]}; checked against {e.base} {e.checked_with}")


@app.command("list")
def list_(base: str = typer.Option("", "--base", help="only this model's adapters"),
          as_json: bool = typer.Option(False, "--json")) -> None:
    """List the adapters kept for deploys, by base model."""
    from controller.services import lora_registry

    entries = lora_registry.list_adapters(base)
    if as_json:
        print_json({"version": 1, "adapters": [asdict(e) for e in entries]})
        return
    if not entries:
        console.print("no adapters; `fleet adapter add NAME --base MODEL FILE.gguf` adds one")
        return
    from rich.table import Table

    table = Table("base", "adapter", "size", "rank", "alpha", "targets", "sha256")
    for e in entries:
        table.add_row(e.base, e.name, mib(e.size_bytes), str(e.rank), f"{e.alpha:g}",
                      ",".join(e.targets), e.sha256[:12])
    console.print(table)


def deploy_adapter(f: Fleet, spec: ModelSpec, adapter: str, devices: list[Device],
                   request: Request, options: DeployOptions,
                   on_job: Callable[[DeviceJob], None], as_json: bool) -> None:
    """`fleet deploy MODEL --adapter NAME`: the plan per device, the rollout, its outcome."""
    from controller.cli.fleet_ops import finish_report
    from controller.services.adapter_deploying import deploy_adapter as run

    def show(targets: list[AdapterTarget]) -> None:
        if as_json:
            return
        for t in targets:
            colour = "yellow" if t.skipped else "default"
            console.print(f"[bold]{t.device}[/]: [{colour}]{esc(t.reason)}[/]")

    report = run(f, spec, adapter, devices, request, options, on_job, show)
    if report.outcomes and all(o.status == "skipped" for o in report.outcomes):
        first = report.outcomes[0]
        if as_json:
            print_json({"version": 1, "rollout": report.rollout, "model": report.model,
                        "status": report.status, "reason": report.reason, "plans": [],
                        "outcomes": [o.__dict__ for o in report.outcomes]})
        raise DeployFailed(f"nothing deployed: adapter {adapter} applies on none of the "
                           f"{len(report.outcomes)} device(s); {first.device}: {first.reason}",
                           hint=first.hint or f"deploy {spec.name} first")
    finish_report(report, as_json, report.model)
