"""`fleet model list|show|build|import`."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

import typer

from controller.cli.common import console, fleet, mib, print_json
from controller.errors import UsageError

app = typer.Typer(help="The model catalog and the local model cache.", no_args_is_help=True,
                  rich_markup_mode=None)


@app.command("list")
def list_(ctx: typer.Context, as_json: bool = typer.Option(False, "--json")) -> None:
    """List catalog models and which variants are in the local cache."""
    from rich.table import Table

    from controller.adapters.data_files import load_catalog
    from controller.core.quality import band

    f = fleet(ctx)
    catalog = load_catalog()
    rows: list[dict[str, Any]] = []
    for m in catalog.values():
        for v in m.variants:
            local = f.artifacts.local(m, v)
            rows.append({"model": m.name, "variant": v.name, "format": v.format,
                         "quant": v.quant, "size_bytes": local.size_bytes if local else
                         v.size_bytes, "quality_kld": v.quality_kld, "local": bool(local),
                         "source": v.source})
    if as_json:
        print_json({"version": 1, "variants": rows})
        return
    table = Table("model", "variant", "format", "size", "KLD", "quality loss", "cached", "source")
    for r in rows:
        table.add_row(r["model"], r["variant"], r["format"], mib(r["size_bytes"]),
                      f"{r['quality_kld']:.4f}", band(r["quality_kld"]),
                      "yes" if r["local"] else "-", r["source"])
    console.print(table)


@app.command("show")
def show(name: str, as_json: bool = typer.Option(False, "--json")) -> None:
    """Show a model's architecture, variants and sources."""
    from controller.adapters.data_files import load_model
    from controller.core.quality import band

    model = load_model(name)
    data = asdict(model)
    if as_json:
        print_json({"version": 1, **data})
        return
    a = model.arch
    console.print(f"[bold]{model.name}[/]: {model.title}")
    console.print(f"  layers {a.n_layer}, embd {a.n_embd}, heads {a.n_head}/{a.n_head_kv} kv, "
                  f"ctx {a.n_ctx_train}, vocab {a.n_vocab}, params {a.params:,}")
    for v in model.variants:
        console.print(f"  {v.name:8} {v.quant:7} {mib(v.size_bytes):>12}  KLD "
                      f"{v.quality_kld:.4f} ({band(v.quality_kld)})  {v.source}")
    for s in model.sources:
        console.print(f"  source: {s}")


@app.command("build")
def build(ctx: typer.Context, name: str = typer.Argument("tiny-llama")) -> None:
    """Build a locally built model's ladder (the offline tiny-llama)."""
    from controller.services import models as model_service

    for art in model_service.build(fleet(ctx), name):
        console.print(f"{art.path.name:32} {mib(art.size_bytes):>10}  sha256 {art.sha256[:16]}")


@app.command("import")
def import_(ctx: typer.Context, name: str, variant: str, path: Path) -> None:
    """Put a file downloaded elsewhere into the cache (air-gapped deploys)."""
    from controller.adapters.data_files import load_model

    f = fleet(ctx)
    model = load_model(name)
    spec = model.variant(variant)
    if spec is None:
        raise UsageError(f"{name} has no variant {variant!r}",
                         hint=f"variants: {', '.join(v.name for v in model.variants)}")
    art = f.artifacts.import_file(model, spec, path)
    console.print(f"imported {name} {variant}: {mib(art.size_bytes)}, sha256 {art.sha256[:16]}")


@app.command("add")
def add(ctx: typer.Context, name: str, path: Path,
        title: str = typer.Option("", "--title", help="Human title of a new model.")) -> None:
    """Register a local GGUF as a model (architecture read from its own header)."""
    from controller.services.catalog_edit import add_gguf

    spec = add_gguf(fleet(ctx), name, path, title)
    a = spec.arch
    console.print(f"added {name} {spec.variants[-1].name}: {a.n_layer} layers, embd {a.n_embd}, "
                  f"{a.n_head}/{a.n_head_kv} heads, ctx {a.n_ctx_train}, {a.params:,} params")


@app.command("quantize")
def quantize(
    ctx: typer.Context,
    name: str,
    source: str = typer.Option("f16", "--from", help="Variant to quantize from."),
    to: str = typer.Option(..., "--to", help="Comma-separated targets, e.g. q8_0,q4_k_m."),
) -> None:
    """Build a GGUF ladder locally with llama.cpp and add it to your catalog."""
    from controller.services.catalog_edit import quantize as run_quantize

    targets = [t.strip().lower() for t in to.split(",") if t.strip()]
    for art in run_quantize(fleet(ctx), name, source, targets):
        console.print(f"{art.path.name:36} {mib(art.size_bytes):>10}  sha256 {art.sha256[:16]}")
