"""`fleet device enroll` and `fleet device rescue`: install, trust and start the agent on a
device over SSH, and restart a wedged one. Re-running either is safe.

On the device, everything lives under one base directory (default
``~/.local/share/edgefleet-agent``): ``venv/`` (``--system-site-packages``, so a runtime
already on the device, e.g. JetPack's llama-cpp-python or onnxruntime, is reused),
``wheels/`` (the installed wheel and the one before it: ``controller.services.agent_wheels``),
``tls/`` (agent certificate and key, fleet CA, manifest-signing public key),
``data/`` (store and telemetry), ``run-agent.sh``, ``agent.log``. A systemd user service
starts it when systemd runs; otherwise a pid file and an ``@reboot`` crontab line. Every value
written into them is quoted for its language (controller.core.launch_scripts), and the device's
name and address are checked again first. pip installs the agent's dependencies at the
versions this controller was tested with (controller.adapters.constraints).
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from controller import settings
from controller.adapters.remote import RemoteHost, q
from controller.core.groups import check_device_name
from controller.core.hosts import check_host
from controller.core.launch_scripts import UNIT, AgentLaunch, is_agent_process
from controller.errors import DeviceError, FleetError, UsageError
from controller.services import agent_liveness, agent_wheels
from controller.services.context import Fleet
from controller.services.trust import issue_agent_files

ROOT = Path(__file__).resolve().parents[2]
MIN_PYTHON = (3, 10)


@dataclass(frozen=True)
class EnrollResult:
    device: str
    base: str
    python: str
    service: str  # systemd-user | pidfile
    agent_version: str
    emulated: bool


def build_wheel(explicit: Path | None = None) -> Path:
    """The edgefleet wheel of the controller's own version (built once, cached)."""
    if explicit is not None:
        if not explicit.is_file():
            raise UsageError(f"no such wheel: {explicit}", hint="pass an edgefleet .whl")
        return explicit
    from agent import __version__

    out = settings.fleet_home() / "wheels"
    wheel = out / f"edgefleet-{__version__}-py3-none-any.whl"
    if not (ROOT / "pyproject.toml").exists():
        if wheel.exists():
            return wheel
        raise UsageError("cannot build the agent wheel outside a source checkout",
                         hint="pass --wheel edgefleet-VERSION-py3-none-any.whl")
    out.mkdir(parents=True, exist_ok=True)
    result = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps",
                             "--no-build-isolation", "-q", "-w", str(out), str(ROOT)],
                            capture_output=True, text=True)
    if result.returncode != 0 or not wheel.exists():
        raise FleetError(f"building the agent wheel failed: {result.stderr.strip()[-300:]}",
                         hint="pip install hatchling editables, then retry")
    return wheel


def _base(remote: RemoteHost, data_dir: str) -> str:
    if data_dir:
        return data_dir.rstrip("/").removesuffix("/data")
    return f"{remote.home()}/.local/share/edgefleet-agent"


def _has_systemd(remote: RemoteHost) -> bool:
    ran = remote.run("systemctl --user is-system-running 2>/dev/null", timeout_s=15)
    return ran.out.strip() in ("running", "degraded", "starting")


def _start(remote: RemoteHost, base: str) -> agent_liveness.Watch:
    """Start (or restart) the enrolled agent: a systemd user service where systemd runs, else
    a pid file and an ``@reboot`` crontab line. The returned watch tells whether it exited."""
    launch = AgentLaunch(base)
    log_from = agent_liveness.log_size(remote, base)
    if _has_systemd(remote):
        remote.check("mkdir -p ~/.config/systemd/user", "creating the unit directory")
        remote.write(f"{remote.home()}/.config/systemd/user/{UNIT}",
                     launch.systemd_unit().encode())
        # reset-failed: before systemd 257 a restart in a crash loop's RestartSec gap keeps
        # the old NRestarts, which agent_liveness would read as this start's crash loop
        remote.check(f"systemctl --user daemon-reload && systemctl --user enable {UNIT} && "
                     f"(systemctl --user reset-failed {UNIT} || true) && "
                     f"systemctl --user restart {UNIT}", "starting the systemd user service")
        return agent_liveness.Watch(remote, base, "systemd-user", log_from)
    _stop_pidfile(remote, base)
    remote.check(f"cd {q(base)} && (setsid nohup ./run-agent.sh >/dev/null 2>&1 < /dev/null "
                 f"& echo $! > agent.pid)", "starting the agent")
    line = launch.crontab_line()
    remote.run(f"command -v crontab >/dev/null && ((crontab -l 2>/dev/null | grep -vF "
               f"{q(line)}; echo {q(line)}) | crontab -)", timeout_s=15)
    return agent_liveness.Watch(remote, base, "pidfile", log_from)


def _stop_pidfile(remote: RemoteHost, base: str) -> None:
    pidfile = f"{base}/agent.pid"
    remote.run(f"if [ -f {q(pidfile)} ]; then p=$(cat {q(pidfile)}); "
               f"if {is_agent_process('$p')}; then "
               f"kill -- -$p 2>/dev/null || kill $p; "
               f"for i in $(seq 50); do kill -0 $p 2>/dev/null || break; sleep 0.1; done; fi; "
               f"rm -f {q(pidfile)}; fi", timeout_s=30)


def _wait_for_agent(fleet: Fleet, name: str, timeout_s: float,
                    gone: Callable[[], str] | None = None) -> tuple[str, bool]:
    """The answering agent's version and whether it emulates a profile. ``gone`` (why the
    agent is not running, '' while it is; ``agent_liveness.Watch.exited``) is asked on every
    poll: an agent that exited fails the wait at once, with its reason."""
    deadline = time.monotonic() + timeout_s
    last: Exception | None = None
    while time.monotonic() < deadline:
        device = fleet.inventory.get_device(name)
        try:
            with fleet.client(device, timeout_s=5) as client:
                profile = client.get_profile()
            return profile.agent_version, profile.emulated
        except FleetError as exc:
            last = exc
        why = gone() if gone is not None else ""
        if why:
            raise DeviceError(f"{name}: {why}", hint=f"`fleet device rescue {name}` shows "
                              "its log; fix the cause, then enroll again")
        time.sleep(0.5)
    raise DeviceError(f"{name}: the agent did not answer within {timeout_s:.0f} s ({last})",
                      hint=f"`fleet device rescue {name}` shows its log")


def enroll(fleet: Fleet, name: str, extras: str = "llama", python: str = "python3",
           wheel: Path | None = None, emulate: str = "", timeout_s: float = 120.0
           ) -> EnrollResult:
    if extras not in ("llama", "onnx", "agent", "none"):
        raise UsageError(f"--extras {extras!r} is not llama, onnx, agent or none",
                         hint="llama for GGUF models, onnx for ONNX, agent for both")
    device = fleet.inventory.get_device(name)
    check_device_name(name)  # records from before these checks existed are checked again
    check_host(device.host, f"{name}'s address")
    wheel_path = build_wheel(wheel)
    ssh = fleet.transfer.connect(fleet.ssh_target(device))
    try:
        remote = RemoteHost(name, ssh)
        version = remote.check(f"{q(python)} -c 'import sys; print(\"%d.%d\" % "
                               "sys.version_info[:2])'", f"running {python}").strip()
        if tuple(int(p) for p in version.split(".")) < MIN_PYTHON:
            raise DeviceError(f"{name}: {python} is {version}; the agent needs >= 3.10",
                              hint="install a newer Python or pass --python PATH")
        base = _base(remote, device.data_dir)
        listen = f"{device.host}:{device.agent_port}" if device.host[0].isdigit() else (
            f"0.0.0.0:{device.agent_port}")
        launch = AgentLaunch(base, listen, emulate)  # checks the directory before any write
        remote.check(f"mkdir -p {q(base)}/wheels {q(base)}/tls {q(base)}/data && "
                     f"chmod 700 {q(base)}/tls", "creating the agent directories")
        for filename, data in issue_agent_files(fleet, name, device.host).items():
            if filename.endswith(".key"):
                remote.write_private(f"{base}/tls/{filename}", data)
            else:
                remote.write(f"{base}/tls/{filename}", data, 0o600)
        remote.check(f"test -x {q(base)}/venv/bin/python || {q(python)} -m venv "
                     f"--system-site-packages {q(base)}/venv", "creating the virtualenv")
        agent_wheels.install(remote, base, agent_wheels.wheel_of(wheel_path), extras)
        remote.write(launch.script_path, launch.run_script().encode(), 0o755)
        watch = _start(remote, base)
        service = watch.how
        fleet.inventory.update_device(name, tls=True, data_dir=f"{base}/data")
        agent_version, emulated = _wait_for_agent(fleet, name, timeout_s, watch.exited)
        fleet.inventory.update_device(name, state="online")  # once it answered
    finally:
        ssh.close()
    return EnrollResult(name, base, version, service, agent_version, emulated)


def _lab_agent(device_dir: str) -> bool:
    """A lab device whose agent `fleet lab up` started (not one enrolled into it)."""
    return bool(device_dir) and not Path(device_dir, "run-agent.sh").exists()


def rescue(fleet: Fleet, name: str, timeout_s: float = 60.0) -> tuple[str, str]:
    """Restart the device's agent over SSH (a lab device's through the lab, which started
    it); return (how, the log's last lines)."""
    device = fleet.inventory.get_device(name)
    lab_dir = device.data_dir.removesuffix("/data") if device.lab else ""
    if device.lab and _lab_agent(lab_dir):
        from controller.services.lab_fleet import lab_restart

        lab_restart(fleet, [name])
        try:
            _wait_for_agent(fleet, name, timeout_s)
            status = "agent answering"
        except DeviceError as exc:
            status = exc.message
        log = Path(lab_dir, "agent.log")
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-20:]) \
            if log.exists() else ""
        return f"restarted the lab agent; {status}", tail
    ssh = fleet.transfer.connect(fleet.ssh_target(device))
    try:
        remote = RemoteHost(name, ssh)
        base = _base(remote, device.data_dir)
        if remote.run(f"test -x {q(base)}/run-agent.sh").code != 0:
            raise DeviceError(f"{name}: no enrolled agent under {base}",
                              hint=f"enroll it first: fleet device enroll {name}")
        watch = _start(remote, base)
        how = watch.how
        try:
            _wait_for_agent(fleet, name, timeout_s, watch.exited)
            status = "agent answering"
        except DeviceError as exc:
            status = exc.message
        tail = remote.run(f"tail -n 20 {q(base)}/agent.log").out
    finally:
        ssh.close()
    return f"restarted via {how}; {status}", tail
