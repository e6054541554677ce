"""`fleet rollouts [list] | show | resume | continue | abort`: persisted rollouts."""

from __future__ import annotations

import typer

app = typer.Typer(help="Rollouts: list, follow, resume, approve the next wave, abort.",
                  invoke_without_command=True, rich_markup_mode=None)
ID = typer.Argument(..., help="A rollout id or its start.")


@app.callback()
def rollouts(ctx: typer.Context,
             limit: int = typer.Option(10, "--limit", help="How many recent rollouts."),
             as_json: bool = typer.Option(False, "--json")) -> None:
    """Recent rollouts with their status and how many devices are at each step."""
    if ctx.invoked_subcommand is None:
        list_cmd(ctx, limit, as_json)


@app.command("list")
def list_cmd(ctx: typer.Context,
             limit: int = typer.Option(10, "--limit", help="How many recent rollouts."),
             as_json: bool = typer.Option(False, "--json")) -> None:
    """Recent rollouts with their status and how many devices are at each step."""
    from controller.cli.common import fleet, print_json
    from controller.cli.render import print_rollouts
    from controller.services import history

    summaries = history.recent(fleet(ctx), limit)
    if as_json:
        print_json({"version": 1, "rollouts": [
                    {"rollout": r.rollout, "model": r.model, "status": r.status,
                     "reason": r.reason, "created_at": r.created_at,
                     "finished_at": r.finished_at, "steps": r.counts} for r in summaries]})
        return
    print_rollouts(summaries)


@app.command("show")
def show_cmd(ctx: typer.Context, rollout: str = ID,
             events: bool = typer.Option(False, "--events", help="Every step every device "
                                         "took, with times."),
             as_json: bool = typer.Option(False, "--json")) -> None:
    """One rollout device by device: the step each is at and why (read live while it runs)."""
    from dataclasses import asdict

    from controller.cli.common import fleet, print_json
    from controller.cli.render import print_rollout
    from controller.services import history

    detail = history.show(fleet(ctx), rollout, events)
    if as_json:
        print_json({"version": 1, **asdict(detail)})
        return
    print_rollout(detail)


@app.command("resume")
def resume_cmd(ctx: typer.Context, rollout: str = ID,
               as_json: bool = typer.Option(False, "--json")) -> None:
    """Finish a rollout whose controller died, was interrupted, or left devices pending:
    each device is asked where it stands first; nothing it holds is sent again."""
    _drive(ctx, rollout, as_json, approve=False)


@app.command("continue")
def continue_cmd(ctx: typer.Context, rollout: str = ID,
                 as_json: bool = typer.Option(False, "--json")) -> None:
    """Approve the next wave of a rollout paused with --wait-approval, and run it."""
    _drive(ctx, rollout, as_json, approve=True)


def _drive(ctx: typer.Context, rollout: str, as_json: bool, approve: bool) -> None:
    from controller.cli.common import fleet
    from controller.cli.fleet_ops import finish_report
    from controller.cli.render import step_printer
    from controller.cli.render_peers import transfer_bars
    from controller.services import rollouts
    from controller.services.ports import DeviceJob

    f = fleet(ctx)
    printer = step_printer(not as_json)
    with transfer_bars(enabled=not as_json) as bars:
        def on_job(job: DeviceJob) -> None:
            bars.job(job)
            printer(job)

        report = rollouts.resume(f, rollout, bars.upload, on_job, approve, bars.peer)
    finish_report(report, as_json, report.model)


@app.command("abort")
def abort_cmd(ctx: typer.Context, rollout: str = ID,
              as_json: bool = typer.Option(False, "--json")) -> None:
    """End a rollout: devices running the new model on trial go back to their previous
    model, devices not started keep theirs."""
    from controller.cli.common import console, esc, fleet, print_json
    from controller.services import rollouts

    report = rollouts.abort(fleet(ctx), rollout)
    if as_json:
        print_json({"version": 1, "rollout": report.rollout,
                    "requested_only": report.requested_only,
                    "devices": [{"device": j.device, "step": j.step.value, "reason": j.reason}
                                for j in report.jobs]})
        return
    if report.requested_only:
        console.print(f"rollout {report.rollout} is being driven by another controller: "
                      "asked it to abort (it rolls back its devices on trial and starts no "
                      f"other); `fleet rollouts show {report.rollout}` follows it")
        return
    for job in report.jobs:
        console.print(f"{job.device}: {job.step.value} - {esc(job.reason)}")
    console.print(f"rollout {report.rollout}: aborted")
