"""`fleet device add|list|show|label|group|import|trust|enroll|upgrade|rescue|remove|calibrate`.
"""

from __future__ import annotations

import json
from pathlib import Path

import typer

from controller.cli.common import console, db_override, esc, fleet, mib, num, print_json
from controller.core.groups import check_group_name
from controller.errors import UsageError

app = typer.Typer(help="Register and inspect devices.", no_args_is_help=True,
                  rich_markup_mode=None)

WHEEL = typer.Option(None, "--wheel", help="The edgefleet wheel to install (default: built "
                     "from this checkout).")
LABELS = typer.Option(None, "--label", "-l", help="k=v (repeatable).")
ADD_GROUPS = typer.Option(None, "--add", "-a", help="Put the device in this group "
                          "(repeatable; created if new).")
REMOVE_GROUPS = typer.Option(None, "--remove", "-r", help="Take the device out of this group "
                             "(repeatable).")
INVENTORY = typer.Argument(..., help="Inventory file or directory (with group_vars/ and "
                           "host_vars/ beside it).")
PAIRS = typer.Argument(..., help="k=v to set, k= to remove")
GROUPS = typer.Option(None, "--group", "-g", help="A group to put the device in "
                      "(repeatable; none: ungrouped).")

@app.command("add")
def add(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="Device name, unique in the fleet."),
    host: str = typer.Option(..., "--host", help="Address or SSH host name."),
    group: list[str] = GROUPS,
    port: int = typer.Option(22, "--port", help="SSH port."),
    user: str = typer.Option("", "--user", help="SSH user (default: from ssh config / you)."),
    key: str = typer.Option("", "--key", help="SSH private key file."),
    agent_port: int = typer.Option(50051, "--agent-port", help="gRPC port of fleet-agent."),
    profile: str = typer.Option("", "--profile", help="Declared hardware profile; probed "
                                "numbers override it."),
    label: list[str] = LABELS,
    proxy_jump: str = typer.Option("", "--proxy-jump", help="[user@]bastion[:port]; "
                                   "default: ProxyJump from ~/.ssh/config"),
) -> None:
    """Register a device. Nothing is sent to it until a deploy."""
    from controller.adapters.tables import Device
    from controller.services.registering import checked_address

    f = fleet(ctx)
    checked_address(f, name, host)
    groups = [check_group_name(g) for g in group or []]
    if not 0 < port < 65536 or not 0 < agent_port < 65536:
        raise UsageError("ports must be 1..65535", hint="check --port and --agent-port")
    if profile and profile not in f.profiles:
        raise UsageError(f"no profile named {profile!r}",
                         hint="`fleet profile list` shows the names")
    from controller.cli.fleet_ops import parse_labels

    labels = parse_labels(label)
    added = f.inventory.add_device(Device(name=name, host=host, ssh_port=port, user=user,
                                          key_path=key, agent_port=agent_port,
                                          profile=profile, labels_json=json.dumps(labels),
                                          proxy_jump=proxy_jump), groups)
    console.print(f"added {name} ({host}:{port}) to {_groups_text(added.group_names)}")


def _groups_text(groups: list[str]) -> str:
    return ("group " if len(groups) == 1 else "groups ") + ", ".join(groups)


@app.command("list")
def list_(
    ctx: typer.Context,
    group: str = typer.Option(None, "--group", "-g", help="Only devices in this group or a "
                              "group nested in it."),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
) -> None:
    """List registered devices with every group each is directly in."""
    from controller.services.device_listing import listing

    rows = listing(db_override(ctx), group, lambda: fleet(ctx))
    if as_json:
        print_json({"version": 1, "devices": rows})
        return
    import sys

    from controller.cli.plain import columns
    from controller.core.display import terminal_safe

    table = [[terminal_safe(str(v)) for v in [d["name"], ",".join(d["groups"]),
              ",".join(f"{k}={v}" for k, v in sorted(d["labels"].items())) or "-",
              f"{d['host']}:{d['ssh_port']}", d["profile"] or "-", d["state"],
              d["model"] or "-", d["variant"] or "-", num(d["last_ttft_ms"]),
              num(d["last_tokens_per_s"])]] for d in rows]
    sys.stdout.write(columns(("NAME", "GROUPS", "LABELS", "ADDRESS", "PROFILE", "STATE",
                              "MODEL", "VARIANT", "TTFT_MS", "TOK/S"), table))


@app.command("show")
def show(ctx: typer.Context, name: str,
         as_json: bool = typer.Option(False, "--json")) -> None:
    """Show one device, with its last probed hardware."""
    from controller.services.context import stored_profile

    f = fleet(ctx)
    d = f.inventory.get_device(name)
    data = {**d.model_dump(), "groups": d.group_names}
    data["probed"] = json.loads(d.probed_json) if d.probed_json else None
    data.pop("probed_json")
    profile = stored_profile(f, d)
    # why a declared GPU is or is not what the cost model predicts with (the agent's build)
    data["gpu_note"] = profile.gpu_note if profile else ""
    if as_json:
        print_json({"version": 1, **data})
        return
    for key, value in data.items():
        if key not in ("probed", "gpu_note"):
            console.print(f"[bold]{key}[/]: {esc(value)}")
    probed = data["probed"]
    if probed:
        console.print(f"[bold]probed[/]: {esc(probed.get('deviceModel', ''))} "
                      f"{esc(probed.get('arch', ''))}"
                      f", {probed.get('cores', '?')} cores, RAM "
                      f"{mib(int(probed.get('ramTotalBytes', 0)))}"
                      + (" [yellow](emulated lab profile)[/]" if probed.get("emulated") else ""))
        runtimes = tuple(probed.get("runtimes", ()))
        if runtimes:
            console.print(f"[bold]runtimes[/]: {esc(', '.join(runtimes))}")
    if profile is not None and profile.gpu_note:
        console.print(f"[bold]gpu[/]: {esc(profile.gpu or 'declared GPU')}; "
                      f"{esc(profile.gpu_note)}")


@app.command("label")
def label_cmd(ctx: typer.Context, name: str,
              pairs: list[str] = PAIRS) -> None:
    """Set or remove labels of a device."""
    from controller.cli.fleet_ops import parse_labels

    f = fleet(ctx)
    device = f.inventory.get_device(name)
    labels = device.labels
    for key, value in parse_labels(pairs).items():
        if value:
            labels[key] = value
        else:
            labels.pop(key, None)
    f.inventory.update_device(name, labels_json=json.dumps(labels))
    console.print(f"{name}: " + esc(", ".join(f"{k}={v}" for k, v in sorted(labels.items()))
                                     or "no labels"))


@app.command("group")
def group_cmd(
    ctx: typer.Context,
    name: str,
    add: list[str] = ADD_GROUPS,
    remove: list[str] = REMOVE_GROUPS,
) -> None:
    """Show, or change, the groups a device is directly in (without options: show them).
    A device taken out of its last group is in `ungrouped`."""
    f = fleet(ctx)
    if add or remove:
        groups = f.inventory.set_device_groups(
            name, [check_group_name(g) for g in add or []], remove or [])
    else:
        groups = f.inventory.get_device(name).group_names
    console.print(f"{name}: {', '.join(groups)}")


@app.command("trust")
def trust(ctx: typer.Context, name: str) -> None:
    """Trust a device's SSH host key on first use (explicit TOFU). A changed key is still
    refused; remove the old line first if the device was re-imaged on purpose."""
    f = fleet(ctx)
    device = f.inventory.get_device(name)
    f.transfer.accept_new = True
    f.transfer.connect(f.ssh_target(device)).close()
    if f.transfer.accepted:
        for line in f.transfer.accepted:
            console.print(f"trusted {line} (added to {f.transfer.known_hosts})")
    else:
        console.print(f"{name}: host key already trusted")


@app.command("import")
def import_cmd(
    ctx: typer.Context,
    path: Path = INVENTORY,
    replace: bool = typer.Option(False, "--replace", help="Update devices that exist (their "
                                 "model and enrollment are kept)."),
    via_ansible: bool = typer.Option(None, "--via-ansible/--builtin", help="Read it with "
                                     "ansible-inventory (vault, plugins, scripts) or with "
                                     "edgefleet's own reader. Default: Ansible when "
                                     "ansible-inventory is installed."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Show what would be imported; "
                                 "write nothing."),
    strict: bool = typer.Option(False, "--strict", help="Refuse the import if any variable "
                                "would be ignored or any host skipped."),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable report."),
) -> None:
    """Import devices, groups (nested) and variables from an Ansible inventory, all or
    nothing, and say what was mapped, what became labels and what was ignored."""
    from controller.services.importing import import_inventory

    reader = "auto" if via_ansible is None else ("ansible" if via_ansible else "builtin")
    report = import_inventory(fleet(ctx), path, replace, reader, dry_run, strict)
    if as_json:
        from dataclasses import asdict

        print_json({"version": 1, **asdict(report), "ignored": report.ignored})
        return
    from controller.cli.render_import import print_import

    print_import(report)


@app.command("enroll")
def enroll_cmd(
    ctx: typer.Context,
    name: str,
    extras: str = typer.Option("llama", "--extras",
                               help="Runtimes to install: llama, onnx, agent (both) or none."),
    python: str = typer.Option("python3", "--python", help="Python on the device."),
    wheel: Path = WHEEL,
    timeout: float = typer.Option(120.0, "--timeout", help="Seconds to wait for the agent."),
) -> None:
    """Install (or upgrade) the agent on a device over SSH, give it a certificate, pin the
    fleet CA and signing key, start it as a service, and record its probed profile."""
    from controller.services.enrolling import enroll

    f = fleet(ctx)
    device = f.inventory.get_device(name)
    result = enroll(f, name, extras, python, wheel,
                    emulate=device.profile if device.lab else "", timeout_s=timeout)
    console.print(f"{result.device}: agent {result.agent_version} running under "
                  f"{result.base} (python {result.python}, {result.service}); mutual TLS on",
                  soft_wrap=True)


@app.command("upgrade")
def upgrade_cmd(
    ctx: typer.Context,
    name: str = typer.Argument(None, help="The device (or select with --group / --label)."),
    group: str = typer.Option(None, "--group", "-g", help="Devices of this group and the "
                              "groups nested in it."),
    label: list[str] = LABELS,
    wheel: Path = WHEEL,
    timeout: float = typer.Option(120.0, "--timeout", help="Seconds the new agent has to come "
                                  "up healthy before the device goes back to its old one."),
    canary: int = typer.Option(1, "--canary", help="Devices upgraded one at a time first; "
                               "any failure stops the upgrade."),
    concurrency: int = typer.Option(4, "--concurrency", help="Devices at once after the "
                                    "canaries."),
    force: bool = typer.Option(False, "--force", help="Reinstall even where the agent already "
                               "runs this version."),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Upgrade agents in place over SSH to this controller's version (canaried; the store and
    certificates are kept; a device whose new agent does not come up healthy goes back to
    its previous one)."""
    from controller.cli.fleet_ops import select_devices
    from controller.errors import DeployFailed, DevicesUnreachable
    from controller.services import agent_wheels, upgrading
    from controller.services.enrolling import build_wheel

    if not 0 <= canary <= 64 or not 1 <= concurrency <= 64 or not 5 <= timeout <= 3600:
        raise UsageError("--canary must be 0..64, --concurrency 1..64, --timeout 5..3600 s",
                         hint="e.g. --canary 1 --concurrency 4 --timeout 120")
    f = fleet(ctx)
    devices = select_devices(f, group, [name] if name else None, label)
    built = agent_wheels.wheel_of(build_wheel(wheel))

    def show(o: upgrading.UpgradeOutcome) -> None:
        if not as_json:
            colour = {"upgraded": "green", "unchanged": "green", "skipped": "yellow",
                      "unreachable": "yellow", "halted": "yellow"}.get(o.status, "red")
            console.print(f"{o.device}: [{colour}]{o.status}[/] {o.reason}"
                          + (f" (hint: {o.hint})" if o.hint and o.status != "upgraded" else ""),
                          highlight=False)

    outcomes = upgrading.upgrade(f, devices, built, timeout, canary, concurrency, force, show)
    if as_json:
        print_json({"version": 1, "wheel": {"version": built.version, "sha256": built.sha256},
                    "devices": [{"device": o.device, "status": o.status, "before": o.before,
                                 "after": o.after, "reason": o.reason, "hint": o.hint,
                                 "seconds": round(o.seconds, 1)} for o in outcomes]})
    failed = [o for o in outcomes if o.failed]
    if failed:
        first = next((o for o in failed if o.status != "halted"), failed[0])
        raise DeployFailed(f"{len(failed)} of {len(outcomes)} devices not upgraded; "
                           f"{first.device}: {first.reason}", hint=first.hint)
    away = [o for o in outcomes if o.status == "unreachable"]
    if away:
        raise DevicesUnreachable(f"{len(away)} of {len(outcomes)} devices unreachable; "
                                 f"{away[0].device}: {away[0].reason}",
                                 hint="run the upgrade again when they are back")


@app.command("rescue")
def rescue_cmd(ctx: typer.Context, name: str) -> None:
    """Restart a wedged agent over SSH and show the end of its log."""
    from controller.services.enrolling import rescue

    status, tail = rescue(fleet(ctx), name)
    console.print(f"{name}: {esc(status)}")
    console.print(esc(tail.rstrip(), keep_newlines=True) or "(empty log)", highlight=False)


@app.command("remove")
def remove(ctx: typer.Context, name: str) -> None:
    """Forget a device and stop trusting its certificate: it is revoked, and the revocation
    list goes to every other enrolled device (nothing on the removed device changes)."""
    from controller.services.trust import revoke_device

    f = fleet(ctx)
    f.inventory.get_device(name)
    revoked = revoke_device(f, name)
    f.inventory.remove_devices([name])
    console.print(f"removed {name}")
    if revoked.serials:
        late = [d for d in revoked.delivered if not d.ok]
        console.print(f"revoked its certificate ({', '.join(f'{s:x}' for s in revoked.serials)}"
                      f"); revocation list {revoked.crl_number} delivered to "
                      f"{len(revoked.delivered) - len(late)} of {len(revoked.delivered)} "
                      "enrolled devices")
        for d in late:
            console.print(f"  [yellow]{d.device}: not delivered ({esc(d.detail)}); `fleet pki "
                          f"push --device {d.device}` when it is back[/]")


@app.command("resync-version")
def resync_version(ctx: typer.Context, name: str) -> None:
    """Move this controller's manifest counter for NAME past the device's high-water mark
    (after restoring the controller's database from a backup); logged in the audit log."""
    from controller.services.manifests import resync_version as resync

    done = resync(fleet(ctx), name)
    if done.after == done.before:
        console.print(f"{name}: counter {done.before} is already at or past the device's "
                      f"mark {done.device_mark}; nothing changed")
    else:
        console.print(f"{name}: counter moved from {done.before} to {done.after} (the "
                      "device's mark); the next load order carries "
                      f"{done.after + 1} (recorded in the audit log)")


@app.command("calibrate")
def calibrate(
    ctx: typer.Context,
    name: str,
    runs: int = typer.Option(3, "--runs", help="Repetitions of the fixed prompt set."),
    max_tokens: int = typer.Option(64, "--max-tokens", help="Tokens generated per prompt."),
    sustain: float | None = typer.Option(
        None, "--sustain", help="Keep benchmarking this many seconds and calibrate on the speed "
        "held at the end (default: 300 on real hardware, where a passive board throttles; 0 on "
        "lab devices)."),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Benchmark the device's active model and store its measured decode efficiency."""
    from dataclasses import asdict

    from controller.services.calibrating import calibrate as run_calibration

    result = run_calibration(fleet(ctx), name, runs, max_tokens, sustain)
    if as_json:
        print_json({"version": 1, **asdict(result)})
        return
    console.print(
        f"{result.device}: {result.model} {result.variant}, {result.samples} samples: "
        f"measured {result.measured_tokens_per_s:.1f} tok/s (median), predicted "
        f"{result.predicted_before:.1f} before calibration; decode efficiency now "
        f"{result.decode_efficiency:.2f} of bandwidth -> predicts "
        f"{result.predicted_after:.1f}. TTFT {result.ttft_ms:.1f} ms, worker peak RSS "
        f"{mib(result.peak_rss_bytes)}, load {result.load_seconds:.2f} s"
    )
    if result.rounds > 1:
        console.print(f"  sustained over {result.seconds:.0f} s ({result.rounds} rounds): first "
                      f"round {result.cold_tokens_per_s:.1f} tok/s, held "
                      f"{result.measured_tokens_per_s:.1f} (thermal factor "
                      f"{result.thermal_factor:.2f})")
