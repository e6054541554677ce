"""`fleet plan|deploy|status|generate`: the fleet-wide verbs."""

from __future__ import annotations

from typing import TYPE_CHECKING

import typer

from controller.cli.common import console, esc, fleet, num, print_json
from controller.core.durations import parse_duration
from controller.errors import DeployFailed, DevicesUnreachable, UsageError

if TYPE_CHECKING:  # the services, gRPC, SSH and rich load inside the commands that use them
    from controller.adapters.tables import Device
    from controller.core.models import ModelSpec
    from controller.core.select import Request
    from controller.services import observing
    from controller.services.context import Fleet
    from controller.services.deploying import DeployReport
    from controller.services.ports import DeviceJob

GROUP = typer.Option(None, "--group", "-g", help="Devices of this group.")
DEVICE = typer.Option(None, "--device", "-d", help="This device (repeatable).")
LABEL = typer.Option(None, "--label", "-l", help="Only devices with label k=v (repeatable).")
CTX = typer.Option(0, "--ctx", help="Context length (default: the model's).")
MIN_TPS = typer.Option(0.0, "--min-tps", help="Minimum decode tokens/s: predicted when "
                       "planning; deploy also gates on the device's measurement.")
MAX_TTFT = typer.Option(0.0, "--max-ttft", help="Maximum TTFT in ms (0: none): predicted when "
                        "planning; deploy also gates on the device's measurement.")
PROMPT = typer.Option(128, "--prompt-tokens", help="Prompt length TTFT is predicted for.")
ALIAS = typer.Option(None, "--alias", help="Another name requests may use for the model, e.g. "
                     "assistant (repeatable; moved here from the model that held it).")
PIN = typer.Option(False, "--pin", help="Never unload the model to make room for another.")
REPLACE = typer.Option(False, "--replace", help="Run the model instead of every other model "
                       "on the device (default: beside them, in the memory they leave).")
SITE_SUBNET = typer.Option(None, "--site-subnet", help="Devices without the site label whose "
                           "address is in this subnet form a site (repeatable), e.g. "
                           "10.2.0.0/24.")
PREFER = typer.Option("quality", "--prefer", help="quality (the best quality at a usable "
                      "speed), max-quality, speed or energy.")


def build_request(spec: ModelSpec, ctx: int, min_tps: float, max_ttft: float,
                  prompt_tokens: int, prefer: str) -> Request:
    from controller.core.select import Request

    if min_tps < 0 or max_ttft < 0 or prompt_tokens < 1:
        raise UsageError("--min-tps and --max-ttft must be >= 0, --prompt-tokens >= 1",
                         hint="e.g. --min-tps 5 --max-ttft 2000")
    return Request(ctx=ctx or spec.default_ctx, min_tokens_per_s=min_tps,
                   max_ttft_ms=max_ttft, prompt_tokens=prompt_tokens, prefer=prefer)


def parse_labels(pairs: list[str] | None) -> dict[str, str]:
    labels = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise UsageError(f"label {pair!r} is not key=value", hint="e.g. --label site=berlin")
        labels[key.strip()] = value.strip()
    return labels


def select_devices(f: Fleet, group: str | None, names: list[str] | None,
                   labels: list[str] | None = None) -> list[Device]:
    """Devices of --group (or all, when only --label is given), filtered by every --label,
    plus each --device named."""
    wanted = parse_labels(labels)
    if not group and not names and not wanted:
        raise UsageError("no devices selected",
                         hint="pass --group G, --label k=v or --device NAME")
    chosen: dict[str, Device] = {}
    if group or wanted:
        pool = f.inventory.devices_in_group(group) if group else f.inventory.list_devices()
        chosen.update((d.name, d) for d in pool
                      if all(d.labels.get(k) == v for k, v in wanted.items()))
    for name in names or []:
        chosen[name] = f.inventory.get_device(name)
    if not chosen:
        raise UsageError(f"no device matches {', '.join(f'{k}={v}' for k, v in wanted.items())}"
                         + (f" in group {group!r}" if group else ""),
                         hint="`fleet device list` shows the labels")
    return list(chosen.values())


def seconds_of(option: str, text: str) -> float:
    try:
        return parse_duration(text)
    except ValueError:
        raise UsageError(f"{option} {text!r} is not a duration",
                         hint="e.g. 90s, 10m, 1h30m, 2d; 0 for none") from None


def share_of(option: str, text: str) -> float:
    """``2%`` or ``0.02`` -> 0.02."""
    try:
        value = float(text.strip().removesuffix("%"))
    except ValueError:
        raise UsageError(f"{option} {text!r} is not a share", hint="e.g. 2% or 0.02") from None
    return value / 100 if text.strip().endswith("%") else value


def finish_report(report: DeployReport, as_json: bool, model: str) -> None:
    """Print a rollout's outcome and turn failures into the exit code."""
    from controller.cli.render import plan_dict, print_outcomes, print_rollout_end

    if as_json:
        print_json({"version": 1, "rollout": report.rollout, "model": report.model,
                    "status": report.status, "reason": report.reason,
                    "plans": [plan_dict(p) for p in report.plans],
                    "outcomes": [o.__dict__ for o in report.outcomes]})
    else:
        for p in report.plans:
            if p.choice:
                console.print(f"[bold]{p.device.name}[/] ({esc(p.choice.profile.name)}): "
                              f"{esc(p.choice.reason)}")
        print_outcomes(report.outcomes)
        print_rollout_end(report)
    if report.outcomes and all(o.status == "skipped" for o in report.outcomes):
        raise DeployFailed(
            f"nothing deployed: no variant of {model} fits any of the "
            f"{len(report.outcomes)} device(s)",
            hint="the table above says what each device lacks; a smaller --ctx or "
            "another model may fit")
    if report.status == "paused":
        return
    if report.failed:
        broken = [o for o in report.failed if o.status not in ("halted", "pending", "planned")]
        held = len(report.failed) - len(broken)
        first = (broken or report.failed)[0]
        if all(o.status == "pending" for o in report.failed):  # nothing failed: exit 4
            raise DevicesUnreachable(
                f"rollout {report.rollout} {report.status}: {held} of "
                f"{len(report.outcomes)} devices unreachable at their turn; {first.device}: "
                f"{first.reason}", hint=first.hint or f"`fleet rollouts resume "
                f"{report.rollout}` goes on when they are back")
        raise DeployFailed(
            f"rollout {report.rollout} {report.status}: {len(broken)} of "
            f"{len(report.outcomes)} devices failed"
            + (f", {held} not done" if held else "") + f"; {first.device}: {first.reason}",
            hint=first.hint or "the table above has each device's reason",
        )


STATE_COLOURS = {"deployed": "green", "serving": "green", "idle": "green", "on trial": "yellow",
                 "drifted": "yellow"}


def _ago(seconds: float | None) -> str:
    if seconds is None:
        return "never"
    if seconds < 90:
        return f"{seconds:.0f} s ago"
    return f"{seconds / 60:.0f} min ago" if seconds < 5400 else f"{seconds / 3600:.1f} h ago"


def render_status(f: Fleet, group: str | None, as_json: bool,
                  labels: list[str] | None = None, wait_s: float = 2.0,
                  exit_unreachable: bool = True) -> None:
    """The status table (or JSON); then, with ``exit_unreachable``, exit 4 when a device is
    unreachable (`fleet status`; the dashboard's plain fallback only shows it)."""
    from controller.cli.render_models import model_dict, models_table
    from controller.services import observing

    if labels:
        devices = select_devices(f, group, None, labels)
    else:
        devices = f.inventory.devices_in_group(group) if group else f.inventory.list_devices()
    rows = observing.status(f, devices, wait_s)
    if as_json:
        print_json({"version": 1, "devices": [
                    {"device": r.device.name, "groups": r.device.group_names,
                     "online": r.online, "state": r.state, "model": r.active_model,
                     "adapter": r.device.adapter or None,
                     "variant": r.active_variant, "on_trial": r.on_trial,
                     "requests": r.requests,
                     "last_ttft_ms": r.last_ttft_ms, "last_latency_ms": r.last_latency_ms,
                     "last_tokens_per_s": r.last_tokens_per_s,
                     "joules_per_token": r.joules_per_token, "power_w": r.power_w,
                     "energy_meter": r.energy_meter, "cpu_percent": r.cpu_percent,
                     "max_temp_c": r.max_temp_c, "throttled": r.throttled,
                     "worker_crashes": r.worker_crashes, "error": r.error,
                     "seen_ago_s": None if r.seen_ago_s is None else round(r.seen_ago_s, 1),
                     "models": [model_dict(m) for m in r.models]}
                    for r in rows]})
    else:
        _status_table(rows)
        models_table(rows)
    away = [r for r in rows if r.state == "unreachable"]
    if away and exit_unreachable:  # after the output: scripts and cron jobs read exit 4
        raise DevicesUnreachable(
            f"{len(away)} of {len(rows)} devices unreachable"
            + (" at the last contact" if wait_s <= 0 else "")
            + f"; {away[0].device.name}: {away[0].error or 'no answer'}",
            hint="`fleet device rescue NAME` restarts an agent over SSH; `fleet doctor` "
            "says what else is wrong")


def _status_table(rows: list[observing.DeviceStatus]) -> None:
    from rich.table import Table

    table = Table("device", "group", "state", "model", "variant", "requests", "ttft ms",
                  "latency ms", "tok/s", "J/tok", "meter", "crashes", "seen")
    for r in rows:
        colour = STATE_COLOURS.get(r.state, "red")
        state = f"[{colour}]{r.state}[/]" + (f" {esc(r.error)}" if r.error else "")
        table.add_row(r.device.name, ",".join(r.device.group_names), state,
                      esc((r.active_model or "-") + (f"+{r.device.adapter}" if
                                                      r.device.adapter else ""))
                      + (f" +{len(r.models) - 1}" if len(r.models) > 1 else ""),
                      esc(r.active_variant or "-"), str(r.requests),
                      num(r.last_ttft_ms), num(r.last_latency_ms), num(r.last_tokens_per_s),
                      num(r.joules_per_token, "{:.3f}"), esc(r.energy_meter or "-"),
                      str(r.worker_crashes), _ago(r.seen_ago_s))
    console.print(table)


def register(app: typer.Typer) -> None:
    @app.command("plan")
    def plan_cmd(
        ctx: typer.Context,
        model: str = typer.Argument(..., help="Catalog model, e.g. tiny-llama or phi3-mini."),
        group: str = GROUP,
        device: list[str] = DEVICE,
        label: list[str] = LABEL,
        context: int = CTX,
        min_tps: float = MIN_TPS,
        max_ttft: float = MAX_TTFT,
        prompt_tokens: int = PROMPT,
        prefer: str = PREFER,
        replace: bool = REPLACE,
        as_json: bool = typer.Option(False, "--json"),
    ) -> None:
        """Show which variant each device would get, and why every other lost."""
        from controller.cli.render import plan_dict, print_plan
        from controller.services import models, planning

        f = fleet(ctx)
        spec = models.ensure_model(f, model)
        devices = select_devices(f, group, device, label)
        request = build_request(spec, context, min_tps, max_ttft, prompt_tokens, prefer)
        plans = planning.plan(f, spec, devices, request, replace=replace)
        if as_json:
            print_json({"version": 1, "plans": [plan_dict(p) for p in plans]})
        else:
            print_plan(plans)

    @app.command("deploy")
    def deploy_cmd(
        ctx: typer.Context,
        model: str = typer.Argument(..., help="Catalog model."),
        group: str = GROUP,
        device: list[str] = DEVICE,
        label: list[str] = LABEL,
        context: int = CTX,
        min_tps: float = MIN_TPS,
        max_ttft: float = MAX_TTFT,
        prompt_tokens: int = PROMPT,
        prefer: str = PREFER,
        concurrency: int = typer.Option(4, "--concurrency", help="Devices at once."),
        retries: int = typer.Option(3, "--retries", help="Resumed retries per upload."),
        bwlimit: float = typer.Option(0.0, "--bwlimit", help="Per-device upload limit, MB/s."),
        streams: int = typer.Option(4, "--streams", help="SFTP channels per upload of 64 MiB "
                                    "or more (each range resumes on its own)."),
        canary: int = typer.Option(1, "--canary", help="Devices per variant that must run it "
                                   "healthy before its other devices start (0: all at once)."),
        max_failures: str = typer.Option("1", "--max-failures", help="Start no new device once "
                                         "this many (or this share, e.g. 10%) could not load "
                                         "or run the model (0: never stop)."),
        max_j: float = typer.Option(0.0, "--max-j-per-token", help="Health gate: roll back "
                                    "where the model measures more joules per token."),
        stage_only: bool = typer.Option(False, "--stage-only", help="Push and verify only; "
                                        "a later deploy activates it with nothing to send."),
        waves: str = typer.Option("", "--waves", help="Reach the devices in growing waves, "
                                  "e.g. 1,10%,50%,100% (gates and --max-failures per wave)."),
        wave_pause: str = typer.Option("0", "--wave-pause", help="Pause between waves, e.g. "
                                       "10m."),
        wait_approval: bool = typer.Option(False, "--wait-approval", help="Stop before each "
                                           "later wave until `fleet rollouts continue ID`."),
        wait: str = typer.Option("0", "--wait", help="Wait this long for devices another "
                                 "rollout holds, and keep retrying devices unreachable at "
                                 "their turn, e.g. 30m."),
        trial_timeout: str = typer.Option("10m", "--trial-timeout", help="A device gives the "
                                          "new model up by itself unless it is committed "
                                          "within this time."),
        wave_p95_ttft: float = typer.Option(0.0, "--wave-max-p95-ttft", help="Between waves: "
                                            "stop if a device of the last wave served a p95 "
                                            "TTFT above this (ms) since it finished."),
        wave_error_rate: str = typer.Option("0", "--wave-max-error-rate", help="Between "
                                            "waves: stop if a device of the last wave failed "
                                            "more than this share of requests, e.g. 2%."),
        wave_min_requests: int = typer.Option(1, "--wave-min-requests", help="A device that "
                                              "served fewer requests is not judged."),
        no_peers: bool = typer.Option(False, "--no-peers", help="Send every device its copy "
                                      "from here, even where devices of a site could seed "
                                      "each other."),
        site_label: str = typer.Option("site", "--site-label", help="Devices sharing this "
                                       "label's value form a site: one copy crosses its "
                                       "uplink, its devices seed each other."),
        site_subnet: list[str] = SITE_SUBNET,
        peer_fanout: int = typer.Option(1, "--peer-fanout", help="Devices that read from one "
                                        "device of a site (1: a pipelined chain)."),
        alias: list[str] = ALIAS,
        replace: bool = REPLACE,
        pin: bool = PIN,
        accept_new: bool = typer.Option(False, "--accept-new",
                                        help="Trust unknown SSH host keys on first use "
                                        "(never a changed one)."),
        as_json: bool = typer.Option(False, "--json"),
        adapter: str = typer.Option("", "--adapter", help="Deploy this LoRA adapter of MODEL "
                                    "(`fleet adapter add`) where MODEL is active, on the "
                                    "variant each device runs; MODEL is not sent again."),
    ) -> None:
        """Pick a variant per device, push it, verify and load it on trial, health-check,
        commit or roll back; the rollout is recorded as it goes (`fleet rollouts`)."""
        from controller.cli.render import step_printer
        from controller.cli.render_peers import transfer_bars
        from controller.services import deploying, models

        f = fleet(ctx)
        f.transfer.accept_new = accept_new
        spec = models.ensure_model(f, model)
        devices = select_devices(f, group, device, label)
        request = build_request(spec, context, min_tps, max_ttft, prompt_tokens, prefer)
        with transfer_bars(enabled=not as_json) as bars:
            options = deploying.DeployOptions(
                concurrency=concurrency, retries=retries, limit_bytes_per_s=bwlimit * 1e6,
                streams=streams, canary=canary, max_failures=max_failures,
                max_joules_per_token=max_j, stage_only=stage_only, waves=waves,
                wave_pause_s=seconds_of("--wave-pause", wave_pause),
                wait_approval=wait_approval, wait_s=seconds_of("--wait", wait),
                trial_seconds=int(seconds_of("--trial-timeout", trial_timeout)),
                wave_max_p95_ttft_ms=wave_p95_ttft,
                wave_max_error_rate=share_of("--wave-max-error-rate", wave_error_rate),
                wave_min_requests=wave_min_requests, progress=bars.upload,
                peers=not no_peers, site_label=site_label,
                site_subnets=tuple(site_subnet or ()), peer_degree=peer_fanout,
                peer_progress=bars.peer, aliases=tuple(alias or ()), replace=replace,
                pinned=pin)
            printer = step_printer(not as_json)

            def on_job(job: DeviceJob) -> None:
                bars.job(job)
                printer(job)

            if adapter:  # the same rollout, for a LoRA adapter on the active base
                from controller.cli.adapter_cmd import deploy_adapter

                deploy_adapter(f, spec, adapter, devices, request, options, on_job, as_json)
                return
            report = deploying.deploy(f, spec, devices, request, options, on_job=on_job)
        finish_report(report, as_json, spec.name)

    @app.command("status")
    def status_cmd(
        ctx: typer.Context,
        group: str = typer.Option(None, "--group", "-g"),
        label: list[str] = LABEL,
        as_json: bool = typer.Option(False, "--json"),
        wait: float = typer.Option(2.0, "--wait", help="Seconds a collection pass may take "
                                   "first (none while `fleet monitor` runs)."),
        no_collect: bool = typer.Option(False, "--no-collect", help="Only read the database."),
    ) -> None:
        """What every device runs and how it did, from the database (collected first)."""
        if wait < 0 or wait > 60:
            raise UsageError("--wait must be 0..60 s", hint="--no-collect reads the database")
        render_status(fleet(ctx), group, as_json, label, 0.0 if no_collect else wait)

    @app.command("generate")
    def generate_cmd(
        ctx: typer.Context,
        prompt: str = typer.Argument(..., help="Prompt text."),
        group: str = GROUP,
        device: list[str] = DEVICE,
        label: list[str] = LABEL,
        max_tokens: int = typer.Option(16, "--max-tokens"),
        model: str = typer.Option("", "--model", help="A model name or alias, on devices "
                                  "that run several (default: each device's default model)."),
        as_json: bool = typer.Option(False, "--json"),
    ) -> None:
        """Generate on each device through its agent, with timing."""
        if max_tokens < 1 or max_tokens > 4096:
            raise UsageError("--max-tokens must be 1..4096", hint="try --max-tokens 16")
        from controller.services import observing

        f = fleet(ctx)
        chosen = select_devices(f, group, device, label)
        results = observing.generate(f, chosen, prompt, max_tokens, model=model)
        if as_json:
            print_json({"version": 1, "results": [{"device": r.device, "error": r.error or None,
                         "text": r.result.text if r.result else None,
                         "completion_tokens": r.result.summary.completion_tokens if r.result
                         else 0,
                         "ttft_ms": r.result.summary.ttft_ms if r.result else None,
                         "decode_tokens_per_s": r.result.summary.decode_tokens_per_s
                         if r.result else None} for r in results]})
        else:
            for r in results:
                if r.result is None:
                    console.print(f"[bold]{r.device}[/]: [red]{esc(r.error)}[/]")
                    continue
                s = r.result.summary
                console.print(f"[bold]{r.device}[/]: {esc(repr(r.result.text))}")
                console.print(f"    {s.completion_tokens} tokens, TTFT {s.ttft_ms:.1f} ms, "
                              f"decode {s.decode_tokens_per_s:.1f} tok/s, "
                              f"prefill {s.prefill_tokens_per_s:.1f} tok/s")
        failed = [r for r in results if r.result is None]
        if failed and all(r.unreachable for r in failed):
            raise DevicesUnreachable(f"{len(failed)} of {len(results)} devices unreachable; "
                                     f"{failed[0].device}: {failed[0].error}",
                                     hint=failed[0].hint)
        if failed:
            raise DeployFailed(f"{len(failed)} of {len(results)} devices could not generate; "
                               f"{failed[0].device}: {failed[0].error}", hint=failed[0].hint)
