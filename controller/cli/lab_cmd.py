"""`fleet lab up|down|restart|status`: a local fleet of real sshd + agent pairs on loopback."""

from __future__ import annotations

import typer

from controller.cli.common import console, fleet
from controller.errors import UsageError

RESTART_DEVICES = typer.Argument(None, help="Lab devices to restart (default: all).")
app = typer.Typer(help="A local lab fleet on loopback addresses.", no_args_is_help=True,
                  rich_markup_mode=None)


@app.command("up")
def up(
    ctx: typer.Context,
    devices: int = typer.Option(4, "--devices", help="How many lab devices."),
    profiles: str = typer.Option("", "--profiles",
                                 help="Comma-separated profiles, cycled over the devices "
                                 "(default: the four lab scale models)."),
    insecure: bool = typer.Option(False, "--insecure",
                                  help="No mutual TLS between controller and lab agents."),
    sshd_only: bool = typer.Option(False, "--sshd-only",
                                   help="Bare devices (sshd, no agent) for `fleet device "
                                   "enroll`."),
    netns: bool = typer.Option(False, "--netns", help="Each device in its own network "
                               "namespace behind a veth link (root)."),
    netem: str = typer.Option("", "--netem", help="Shape those links with tc netem, e.g. "
                              "'delay 40ms loss 2%'."),
    fresh: bool = typer.Option(False, "--fresh", help="Wipe the devices' stores (by default a "
                               "lab started again keeps them, as devices keep their disks)."),
    site_lan: bool = typer.Option(False, "--site-lan", help="With --netns: the devices share "
                                  "one LAN (a bridge) behind one uplink, as a store's kiosks; "
                                  "labelled site=lab-lan."),
    uplink: str = typer.Option("", "--uplink", help="With --site-lan: limit the uplink with "
                               "tbf, e.g. 100mbit."),
) -> None:
    """Start the lab (stopping a previous one first, keeping its stores) and register it as
    group `lab`."""
    from rich.table import Table

    from controller.services import lab_fleet

    chosen = [p.strip() for p in profiles.split(",") if p.strip()]
    if netem and not netns:
        raise UsageError("--netem shapes the --netns links", hint="add --netns")
    started = lab_fleet.lab_up(fleet(ctx), devices, chosen, secure=not insecure,
                               agents=not sshd_only, netns=netns, netem=netem, fresh=fresh,
                               site_lan=site_lan, uplink=uplink)
    table = Table("device", "profile", "ssh", "agent")
    for d in started:
        table.add_row(d.name, d.profile, f"{d.address}:{d.ssh_port}",
                      f"{d.address}:{d.agent_port}")
    console.print(table)
    console.print(f"lab up: {len(started)} devices in group 'lab'")


@app.command("restart")
def restart(
    ctx: typer.Context,
    device: list[str] = RESTART_DEVICES,
    kill: bool = typer.Option(False, "--kill", help="End the agent with SIGKILL (a power "
                              "cut) instead of SIGTERM."),
) -> None:
    """Restart lab agents, keeping their stores: each restores its model by itself."""
    from controller.services import lab_fleet

    restarted = lab_fleet.lab_restart(fleet(ctx), device or None, kill=kill)
    for d in restarted:
        console.print(f"{d.name}: agent restarted (pid {d.agent_pid}, "
                      f"{d.address}:{d.agent_port})")


@app.command("down")
def down(ctx: typer.Context) -> None:
    """Stop exactly the processes `lab up` started and forget the lab devices."""
    from controller.services import lab_fleet

    stopped = lab_fleet.lab_down(fleet(ctx))
    console.print(f"lab down: stopped {len(stopped)} devices")


@app.command("status")
def status(as_json: bool = typer.Option(False, "--json")) -> None:
    """Show the running lab devices: ssh, agent, and the OpenAI-compatible endpoint that
    apps on the device would use (reachable from this machine for a device on loopback)."""
    from controller.cli.common import print_json
    from controller.services import lab_fleet

    running = lab_fleet.lab_running()
    if as_json:
        print_json({"version": 1, "devices": [{
            "name": d.name, "profile": d.profile, "ssh": f"{d.address}:{d.ssh_port}",
            "agent": f"{d.address}:{d.agent_port}", "netns": d.netns or None,
            "openai": (f"http://{'127.0.0.1' if d.netns else d.address}:{d.openai_port}/v1"
                       if d.openai_port else None)} for d in running]})
        return
    if not running:
        console.print("no lab running")
        return
    for d in running:
        openai = (f" openai http://{d.address}:{d.openai_port}/v1" if d.openai_port
                  and not d.netns else "")
        console.print(f"{d.name} {d.profile} ssh {d.address}:{d.ssh_port} "
                      f"agent {d.address}:{d.agent_port}{openai} "
                      f"(pids {d.sshd_pid}, {d.agent_pid})")
