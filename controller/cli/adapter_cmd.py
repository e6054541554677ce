"""`fleet adapter add|list`: LoRA adapters for catalog models."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import typer

from controller.cli.common import console, fleet, mib, print_json

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
