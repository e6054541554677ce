"""`fleet group list|show|add|remove|parent`: groups, and groups inside groups.

Which groups a device is in is `fleet device group NAME --add G --remove G`.
"""

from __future__ import annotations

from dataclasses import asdict

import typer

from controller.cli.common import console, fleet, print_json
from controller.core.groups import check_group_name
from controller.errors import UnknownGroup

app = typer.Typer(help="Groups of devices, nested as in Ansible (children).",
                  no_args_is_help=True, rich_markup_mode=None)
PARENTS = typer.Option(None, "--parent", "-p", help="A group that contains this one "
                       "(repeatable; created if new).")
ADD_PARENTS = typer.Option(None, "--add", "-a", help="Put the group inside this one "
                           "(repeatable; created if new).")
REMOVE_PARENTS = typer.Option(None, "--remove", "-r", help="Take the group out of this one "
                              "(repeatable).")


@app.command("list")
def list_(ctx: typer.Context,
          as_json: bool = typer.Option(False, "--json", help="Machine-readable output.")) -> None:
    """Every group with its parents, children and devices (direct / with nested groups)."""
    groups = fleet(ctx).inventory.group_tree()
    if as_json:
        print_json({"version": 1, "groups": [asdict(g) for g in groups]})
        return
    from rich.table import Table

    table = Table("group", "parents", "children", "devices", "with nested")
    for g in groups:
        table.add_row(g.name, ",".join(g.parents) or "-", ",".join(g.children) or "-",
                      str(len(g.devices)), str(len(g.all_devices)))
    console.print(table)


@app.command("show")
def show(ctx: typer.Context, name: str,
         as_json: bool = typer.Option(False, "--json", help="Machine-readable output.")) -> None:
    """One group: its parents, children, its own devices and those of nested groups."""
    inventory = fleet(ctx).inventory
    found = [g for g in inventory.group_tree() if g.name == name]
    if not found:
        raise UnknownGroup(f"no group named {name!r}", hint="`fleet group list` shows them")
    group = found[0]
    if as_json:
        print_json({"version": 1, **asdict(group)})
        return
    console.print(f"[bold]{group.name}[/]")
    console.print(f"  parents:  {', '.join(group.parents) or '-'}")
    console.print(f"  children: {', '.join(group.children) or '-'}")
    console.print(f"  devices:  {', '.join(group.devices) or '-'}")
    nested = sorted(set(group.all_devices) - set(group.devices))
    console.print(f"  devices of nested groups: {', '.join(nested) or '-'}")


@app.command("add")
def add(
    ctx: typer.Context,
    name: str,
    parent: list[str] = PARENTS,
) -> None:
    """Create a group (or add parents to one that exists)."""
    parents = [check_group_name(p) for p in parent or []]
    fleet(ctx).inventory.add_group(check_group_name(name), parents)
    console.print(f"group {name}" + (f" inside {', '.join(parents)}" if parents else ""))


@app.command("parent")
def parent_cmd(
    ctx: typer.Context,
    name: str,
    add: list[str] = ADD_PARENTS,
    remove: list[str] = REMOVE_PARENTS,
) -> None:
    """Change the groups a group sits inside (Ansible's children, seen from the child)."""
    parents = fleet(ctx).inventory.link_group(
        name, [check_group_name(p) for p in add or []], remove or [])
    console.print(f"{name} is inside: {', '.join(parents) or 'no group (top level)'}")


@app.command("remove")
def remove(ctx: typer.Context, name: str) -> None:
    """Forget a group and its links; its devices stay registered (in their other groups, or
    `ungrouped`)."""
    devices = fleet(ctx).inventory.remove_group(name)
    console.print(f"removed group {name}" + (f"; its devices stay: {', '.join(devices)}"
                                              if devices else ""))
