"""Shared CLI plumbing: the Fleet for this run, output helpers.

Light on purpose: every command module imports this, so nothing here imports rich, the
database or the services at module level (`fleet --help` pays for none of them).
"""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING, Any

import typer

if TYPE_CHECKING:
    from rich.console import Console

    from controller.services.context import Fleet


class _LazyConsole:
    """The rich Console, created on first use (importing rich costs ~0.1 s)."""

    _console: Console | None = None

    def get(self) -> Console:
        if self._console is None:
            from rich.console import Console

            # Piped output (CI logs, `| less`) gets wide tables instead of rich's 80 columns.
            self._console = Console(width=None if sys.stdout.isatty() else 160)
        return self._console

    def __getattr__(self, name: str) -> Any:
        return getattr(self.get(), name)


console: Any = _LazyConsole()


def fleet(ctx: typer.Context) -> Fleet:
    obj = ctx.find_root().obj
    if obj.get("fleet") is None:
        from controller.services.context import Fleet

        obj["fleet"] = Fleet.open(obj.get("db"))
    fleet_obj: Fleet = obj["fleet"]
    return fleet_obj


def db_override(ctx: typer.Context) -> str | None:
    """The --db given to this run (None: $FLEET_DB_URL or the default)."""
    db: str | None = ctx.find_root().obj.get("db")
    return db


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
    from rich.markup import escape

    from controller.core.display import terminal_safe

    return escape(terminal_safe(str(value), keep_newlines))
