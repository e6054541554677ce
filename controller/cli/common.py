"""Shared CLI plumbing: the Fleet for this run, output helpers."""

from __future__ import annotations

import json
import sys
from typing import Any

import typer
from rich.console import Console
from rich.markup import escape

from controller.core.display import terminal_safe
from controller.services.context import Fleet

# Piped output (CI logs, `| less`) gets wide tables instead of rich's 80-column default.
console = Console(width=None if sys.stdout.isatty() else 160)


def fleet(ctx: typer.Context) -> Fleet:
    obj = ctx.find_root().obj
    if obj.get("fleet") is None:
        obj["fleet"] = Fleet.open(obj.get("db"))
    fleet_obj: Fleet = obj["fleet"]
    return fleet_obj


def print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")


def mib(n: float | int | None) -> str:
    if n is None:
        return "-"
    return f"{n / 1048576:,.0f} MiB" if n >= 10 * 1048576 else f"{n / 1048576:.1f} MiB"


def num(value: float | None, fmt: str = "{:.1f}") -> str:
    return "-" if value is None else fmt.format(value)


def esc(value: object, keep_newlines: bool = False) -> str:
    """Text from a device (or anyone but us) for Rich: shown literally, its markup escaped
    and its terminal control sequences dropped (controller.core.display)."""
    return escape(terminal_safe(str(value), keep_newlines))
