"""How `fleet device import` reports what it read: per device, then what was mapped from
which variable, which variables became labels, which were ignored (each named, with why) and
which hosts were skipped."""

from __future__ import annotations

from rich.table import Table

from controller.cli.common import console
from controller.services.importing import ImportReport


def print_import(report: ImportReport) -> None:
    """What `fleet device import` read, mapped, labelled, ignored and skipped."""
    reader = ("ansible-inventory" if report.reader == "ansible" else "edgefleet's reader "
              "(ansible-inventory not used)")
    console.print(f"read {report.source} with {reader}")
    table = Table("device", "address", "user", "key", "jump host", "groups", "labels")
    for h in report.hosts:
        table.add_row(h.name, f"{h.address}:{h.port}", h.user or "-", h.key or "-",
                      h.proxy_jump or "-", ",".join(h.groups),
                      ",".join(f"{k}={v}" for k, v in sorted(h.labels.items())) or "-")
    console.print(table)
    mapped: dict[str, set[str]] = {}
    for h in report.hosts:
        for what, variable in h.mapped.items():
            mapped.setdefault(f"{what} <- {variable}", set()).add(h.name)
    if mapped:
        console.print("mapped: " + "; ".join(f"{k} ({len(v)})" for k, v in sorted(
            mapped.items())), markup=False, highlight=False)
    labels = sorted({k for h in report.hosts for k in h.labels})
    console.print("labels: " + (", ".join(labels) or "none"), markup=False, highlight=False)
    reasons = {name: why for h in report.hosts for name, why in h.ignored.items()}
    for name, hosts in report.ignored.items():
        console.print(f"ignored: {name} on {len(hosts)} host(s) ({', '.join(hosts[:3])}"
                      f"{'...' if len(hosts) > 3 else ''}): {reasons[name]}",
                      markup=False, highlight=False)
    for s in report.skipped:
        console.print(f"skipped: {s.name} ({s.origin}): {s.reason}", markup=False,
                      highlight=False)
    for w in report.warnings:
        console.print(f"warning: {w}", markup=False, highlight=False)
    groups = [g for g in report.groups if g != "ungrouped"
              or any("ungrouped" in h.groups for h in report.hosts)]
    if not report.written:
        console.print(f"dry run: would import {len(report.hosts)} devices into "
                      f"{_groups(groups)}; nothing written")
        return
    updated = f" ({len(report.updated)} updated)" if report.updated else ""
    console.print(f"imported {len(report.hosts)} devices{updated} into {_groups(groups)}")


def _groups(groups: list[str]) -> str:
    return f"{len(groups)} group{'' if len(groups) == 1 else 's'}: {', '.join(groups)}"
