"""Human rendering of plans and outcomes (kept out of the commands)."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from typing import Any

from rich.progress import BarColumn, DownloadColumn, Progress, TransferSpeedColumn
from rich.table import Table

from controller.cli.common import console, esc, mib
from controller.core.select import Choice
from controller.core.steps import FINAL, Step
from controller.services.deploying import DeployReport, Outcome
from controller.services.history import RolloutDetail, RolloutSummary
from controller.services.planning import DevicePlan
from controller.services.ports import DeviceJob


def choice_dict(choice: Choice | None) -> dict[str, Any] | None:
    if choice is None:
        return None
    return {
        "profile": choice.profile.name,
        "ctx": choice.ctx,
        "chosen": choice.chosen.variant.name if choice.chosen else None,
        "reason": choice.reason,
        "candidates": [
            {"variant": c.variant.name, "fits": c.fits, "memory_bytes": c.memory.total,
             "weights_bytes": c.memory.weights, "kv_cache_bytes": c.memory.kv_cache,
             "compute_bytes": c.memory.compute, "overhead_bytes": c.memory.overhead,
             "tokens_per_s": round(c.tokens_per_s, 2),
             "joules_per_token": round(c.joules_per_token, 3),
             "quality_kld": c.variant.quality_kld, "reason": c.reason}
            for c in choice.candidates
        ],
    }


def plan_dict(p: DevicePlan) -> dict[str, Any]:
    data = {"device": p.device.name, "groups": p.device.group_names,
            "profile_source": p.profile_source,
            "error": p.error.detail if p.error else None, **(choice_dict(p.choice) or {})}
    for c in data.get("candidates", []):
        c["measured_tokens_per_s"] = p.measured.get(c["variant"])
    return data


def print_plan(plans: list[DevicePlan]) -> None:
    for p in plans:
        head = f"[bold]{p.device.name}[/]"
        if p.choice is None:
            console.print(f"{head}: no profile known ({esc(p.error.detail) if p.error else ''})")
            continue
        prof = p.choice.profile
        src = p.profile_source + (f"; agent unreachable: {p.error.detail}" if p.error else "")
        src = esc(src)
        mark = "[green]" if p.choice.chosen else "[red]"
        console.print(f"{head} ({esc(prof.name)}, {src}): {mark}{esc(p.choice.reason)}[/]")
        table = Table("variant", "memory", "tok/s", "measured", "TTFT ms", "J/tok", "KLD",
                      "verdict", box=None, pad_edge=False)
        for c in p.choice.candidates:
            won = p.choice.chosen is not None and c.variant.name == p.choice.chosen.variant.name
            measured = p.measured.get(c.variant.name)
            table.add_row(("* " if won else "  ") + c.variant.name, mib(c.memory.total),
                          f"{c.tokens_per_s:.1f}",
                          f"{measured:.1f}" if measured else "-",
                          f"{c.ttft_ms:.0f}" if c.ttft_ms else "-",
                          f"{c.joules_per_token:.2f}" if c.joules_per_token else "-",
                          f"{c.variant.quality_kld:.4f}", "chosen" if won else esc(c.reason))
        console.print(table)


OUTCOME_COLOURS = {"committed": "green", "unchanged": "green", "staged": "green",
                   "completed": "green", "skipped": "yellow", "halted": "yellow",
                   "pending": "yellow", "planned": "yellow", "paused": "yellow",
                   "running": "cyan", "uploading": "cyan", "loading": "cyan",
                   "on-trial": "cyan", "checking": "cyan", "interrupted": "yellow",
                   "aborted": "yellow", "superseded": "yellow"}
ROLLOUT_HINTS = {
    "pending": "`fleet rollouts resume {id}` goes on when the devices are back (or deploy "
               "with --wait)",
    "interrupted": "`fleet rollouts resume {id}` goes on; `fleet rollouts abort {id}` ends it",
    "paused": "`fleet rollouts continue {id}` starts the next wave; `fleet rollouts abort "
              "{id}` ends it",
}


def print_outcomes(outcomes: list[Outcome]) -> None:
    from controller.cli.render_peers import peers_cell, print_sites

    sited = any(o.site for o in outcomes)  # "sent": from the controller; "peers": from peers
    table = Table("device", "result", "variant", "sent", *(["peers"] if sited else []),
                  "secs", "why")
    for o in outcomes:
        c = OUTCOME_COLOURS.get(o.status, "red")
        table.add_row(o.device, f"[{c}]{o.status}[/]", esc(o.variant or "-"), mib(o.bytes_sent),
                      *([peers_cell(o)] if sited else []), f"{o.seconds:.1f}",
                      esc(o.reason + (f" (hint: {o.hint})" if o.hint else "")))
    console.print(table)
    print_sites(outcomes)


@contextlib.contextmanager
def transfer_progress(enabled: bool = True) -> Iterator[Callable[[str, int, int], None]]:
    """Per-device and total upload bars (rich); a no-op callback when disabled or piped."""
    if not enabled or not console.is_terminal:
        yield lambda device, done, total: None
        return
    lock = threading.Lock()
    tasks: dict[str, Any] = {}
    done_by: dict[str, int] = {}
    totals: dict[str, int] = {}
    with Progress("{task.description}", BarColumn(), DownloadColumn(), TransferSpeedColumn(),
                  console=console, transient=True) as bars:
        overall = bars.add_task("all devices", total=0)

        def update(device: str, done: int, total: int) -> None:
            with lock:
                if device not in tasks:
                    tasks[device] = bars.add_task(device, total=total)
                done_by[device], totals[device] = done, total
                bars.update(tasks[device], completed=done)
                bars.update(overall, total=sum(totals.values()),
                            completed=sum(done_by.values()))

        yield update


def _colour(word: str) -> str:
    return f"[{OUTCOME_COLOURS.get(word, 'red')}]{word}[/]"


def print_rollouts(summaries: list[RolloutSummary]) -> None:
    table = Table("rollout", "started", "model", "status", "devices")
    for r in summaries:
        when = r.created_at.strftime("%Y-%m-%d %H:%M:%S") if r.created_at else "-"
        counts = ", ".join(f"{n} {_colour(k)}" for k, n in sorted(r.counts.items()))
        table.add_row(r.rollout, when, esc(r.model), _colour(r.status), counts)
    console.print(table)


def print_rollout(detail: RolloutDetail) -> None:
    s = detail.summary
    waves = (f", wave {detail.wave + 1} of {len(detail.waves)} ({'/'.join(map(str, detail.waves))}"
             " devices)" if len(detail.waves) > 1 else "")
    console.print(f"[bold]rollout {s.rollout}[/] {esc(s.model)}: {_colour(s.status)}{waves}"
                  + (f" - {esc(s.reason)}" if s.reason else ""))
    sited = any(d.site for d in detail.devices)  # "sent": from us; "peers": from its site
    table = Table("device", "wave", "step", "variant", *(["site", "sent", "peers"] if sited
                                                          else ["sent"]), "why")
    for d in detail.devices:
        sent = mib(d.bytes_sent) + (f" / {mib(d.size_bytes)}" if d.step == "uploading" else "")
        peers = ", ".join(f"{mib(n)} {p}" for p, n in sorted(d.peer_bytes.items()) if n) or "-"
        table.add_row(d.device, str(d.wave + 1), _colour(d.step), esc(d.variant or "-"),
                      *([esc(d.site or "-"), sent, peers] if sited else [sent]),
                      esc(d.reason + (f" (hint: {d.hint})" if d.hint else "")))
    console.print(table)
    if detail.events:
        events = Table("time", "device", "step", "sent", "why", title="events")
        for e in detail.events:
            events.add_row(e.at.strftime("%H:%M:%S"), e.device, _colour(e.step),
                           mib(e.bytes_sent), esc(e.reason))
        console.print(events)
    hint = ROLLOUT_HINTS.get(s.status)
    if hint:
        console.print("hint: " + hint.format(id=s.rollout))


def print_rollout_end(report: DeployReport) -> None:
    line = f"rollout {report.rollout}: {_colour(report.status)}"
    console.print(line + (f" - {esc(report.reason)}" if report.reason else ""))
    hint = ROLLOUT_HINTS.get(report.status)
    if hint:
        console.print("hint: " + hint.format(id=report.rollout))


def step_printer(enabled: bool) -> Callable[[DeviceJob], None]:
    """One line per device step as it happens (a terminal only: the table follows)."""
    if not enabled or not console.is_terminal:
        return lambda job: None
    lock = threading.Lock()

    def show(job: DeviceJob) -> None:
        if job.step in FINAL or job.step is Step.PLANNED:
            return
        with lock:
            console.print(f"  {job.device}: {_colour(job.step.value)} {esc(job.reason)}",
                          highlight=False)

    return show
