"""A local lab fleet: per device, a real OpenSSH sshd on its own loopback address with its own
host key, and a real ``fleet-agent`` emulating a profile.

Everything started is recorded in ``lab/registry.json`` with its pid and kernel start time, so
``lab down`` stops exactly those processes (a recycled pid is never killed) and ``lab up`` run
twice first stops what the previous one started. A device's data directory (its model store)
outlives both: ``lab up`` on an existing lab, and ``restart`` of one device or all, keep it,
as a real device keeps its disk across reboots (``fresh`` wipes it).
"""

from __future__ import annotations

import contextlib
import getpass
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from controller import lab_netns
from controller.adapters.private_files import private_dir, write_private
from controller.core.log_lines import last_error
from controller.errors import LabError

SSHD_CANDIDATES = ("/usr/sbin/sshd", "/usr/bin/sshd", "/usr/local/sbin/sshd")
DEFAULT_PROFILES = ("lab-pi4-2gb", "lab-pi5-8gb", "lab-orin-nano-8gb", "lab-n100-16gb")
FIRST_HOST = 11  # lab devices live at 127.0.0.11, .12, ...
START_TIMEOUT_S = 30.0


@dataclass
class LabDevice:
    name: str
    profile: str
    address: str
    ssh_port: int
    agent_port: int
    directory: str
    sshd_pid: int
    sshd_start: int
    agent_pid: int
    agent_start: int
    inference_port: int = 0  # the agent's local, certificate-free inference listener
    netns: str = ""  # set when the device sits behind a veth link in its own namespace
    host_if: str = ""
    device_if: str = ""
    # how its agent was started (bound port included), so a restart starts the same one
    agent_cmd: list[str] = field(default_factory=list)
    host_netns: str = ""  # on a site LAN (--site-lan): the site's switch namespace
    uplink_if: str = ""  # and this machine's end of the site's uplink
    openai_port: int = 0  # the agent's OpenAI-compatible endpoint for apps (local only)

    @property
    def link(self) -> lab_netns.NetLink | None:
        if not self.netns:
            return None
        return lab_netns.NetLink(self.netns, self.host_if, self.device_if, self.address,
                                 self.host_netns)

    @property
    def data_dir(self) -> str:
        return str(Path(self.directory) / "data")


def find_sshd() -> str:
    for path in SSHD_CANDIDATES:
        if Path(path).exists():
            return path
    found = shutil.which("sshd")
    if found:
        return found
    raise LabError("OpenSSH server (sshd) is not installed",
                   hint="apt-get install openssh-server (make demo / make test do it)")


def _free_ports(address: str, count: int) -> list[int]:
    """``count`` distinct free ports, all held until all are chosen: ports picked one at a
    time and released can come back twice (about once in 10,000 pairs here), and a lab
    device whose sshd and agent are handed one port fails to start."""
    with contextlib.ExitStack() as held:
        ports = []
        for _ in range(count):
            s = held.enter_context(socket.socket())
            s.bind((address, 0))
            ports.append(int(s.getsockname()[1]))
        return ports


def _size(log: Path) -> int:
    return log.stat().st_size if log.exists() else 0


def _last_line(log: Path, since: int = 0) -> str:
    """The line of a lab process's log that says why it stopped, among what it wrote after
    byte ``since`` (the log is appended to across restarts)."""
    if not log.exists():
        return "no log"
    with log.open("rb") as fh:
        fh.seek(max(since, log.stat().st_size - 8000))
        text = fh.read().decode(errors="replace")
    return last_error(text) or "nothing in its log"


def _start_time(pid: int) -> int:
    """Kernel start time of ``pid`` in clock ticks, 0 if it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0
    return int(stat.rsplit(")", 1)[1].split()[19])


def child_pids(pid: int) -> list[int]:
    """Direct children of ``pid`` (for a lab sshd: its live sessions)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
            found.append(int(entry.name))
    return found


def _same_process(pid: int, start: int) -> bool:
    return pid > 0 and start > 0 and _start_time(pid) == start


def client_key(lab_dir: Path) -> Path:
    key = lab_dir / "id_ed25519"
    if not key.exists():
        lab_dir.mkdir(parents=True, exist_ok=True)
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "edgefleet-lab",
                        "-f", str(key)], check=True)
    return key


def _sshd_config(d: Path, address: str, port: int, authorized: Path) -> Path:
    config = d / "sshd_config"
    config.write_text(
        "\n".join([
            f"Port {port}",
            f"ListenAddress {address}",
            f"HostKey {d / 'ssh_host_ed25519_key'}",
            f"PidFile {d / 'sshd.pid'}",
            f"AuthorizedKeysFile {authorized}",
            f"AllowUsers {getpass.getuser()}",
            "UsePAM no",
            "StrictModes no",
            "PasswordAuthentication no",
            "KbdInteractiveAuthentication no",
            "PubkeyAuthentication yes",
            "PermitRootLogin prohibit-password",
            "Subsystem sftp internal-sftp",
            f"LogLevel {os.environ.get('FLEET_LAB_SSHD_LOGLEVEL', 'ERROR')}",
            "",
        ])
    )
    return config


def _wait_for(check: object, what: str, log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if check():  # type: ignore[operator]
            return
        time.sleep(0.05)
    raise LabError(f"{what} did not start within {START_TIMEOUT_S:.0f} s",
                   hint=f"see {log}: {_last_line(log)}")


def _port_open(address: str, port: int) -> bool:
    try:
        with socket.create_connection((address, port), timeout=0.2):
            return True
    except OSError:
        return False


TlsFiles = Callable[[str, str], dict[str, bytes]]  # (device, address) -> file name -> bytes


def _fresh_device_dir(d: Path, keep_data: bool) -> None:
    """Everything of a device directory is made anew but its data (the agent's store and
    telemetry) when ``keep_data``, and its SSH host key (what known_hosts lists for it)."""
    if d.exists():
        for entry in d.iterdir():
            if (keep_data and entry.name == "data") or entry.name.startswith("ssh_host_"):
                continue
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink()
        if not keep_data and (d / "data").exists():
            shutil.rmtree(d / "data")
    (d / "data").mkdir(parents=True, exist_ok=True)


def start_device(lab_dir: Path, index: int, profile: str, authorized: Path,
                 threads: int, tls: TlsFiles | None = None,
                 start_agent: bool = True, link: lab_netns.NetLink | None = None,
                 keep_data: bool = True) -> LabDevice:
    name = f"lab-{index + 1}"
    address = link.address if link else f"127.0.0.{FIRST_HOST + index}"
    prefix = link.exec_prefix if link else []
    d = lab_dir / "devices" / name
    _fresh_device_dir(d, keep_data)
    # without TLS (`lab up --insecure`) a device in its own namespace listens on a routable
    # address, which the agent refuses unless told
    tls_args: list[str] = ["--insecure"]
    if tls is not None:
        private_dir(d / "tls")
        for filename, data in tls(name, address).items():
            write_private(d / "tls" / filename, data)
        tls_args = ["--tls-dir", str(d / "tls")]
    if not (d / "ssh_host_ed25519_key").exists():
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", name,
                        "-f", str(d / "ssh_host_ed25519_key")], check=True)
    if os.geteuid() == 0:
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # sshd's privilege-separation dir
    # A namespace has its own ports: fixed ones there, free ones on the shared loopback.
    ssh_port, inference_port, openai_port, agent_port = (
        (lab_netns.SSH_PORT, lab_netns.INFERENCE_PORT, lab_netns.OPENAI_PORT,
         lab_netns.AGENT_PORT) if link else _free_ports(address, 4))
    config = _sshd_config(d, address, ssh_port, authorized)
    sshd_log = d / "sshd.log"
    # Never inherit our stdout: a daemon holding it open would keep `fleet lab up | tail`
    # waiting for an end of file that never comes.
    sshd = subprocess.Popen([*prefix, find_sshd(), "-D", "-f", str(config), "-E",
                             str(sshd_log)], start_new_session=True, stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    port_file = d / "agent.port"
    agent_log = d / "agent.log"
    inference_at = f"127.0.0.1:{inference_port}" if link else f"{address}:{inference_port}"
    openai_at = f"127.0.0.1:{openai_port}" if link else f"{address}:{openai_port}"
    net = (link.netns, link.host_if, link.device_if) if link else ("", "", "")
    site = (link.host_netns, "") if link else ("", "")
    if not start_agent:  # a bare device: sshd only, for `fleet device enroll`
        device = LabDevice(name, profile, address, ssh_port, agent_port, str(d),
                           sshd.pid, _start_time(sshd.pid), 0, 0, 0, *net, [], *site)
        try:
            _wait_for(lambda: _port_open(address, ssh_port) or sshd.poll() is not None,
                      f"sshd for {name}", sshd_log)
        except LabError:
            _stop(device)
            raise
        return device
    command = [*prefix, sys.executable, "-m", "agent.cli", "serve", "--listen",
               f"{address}:{lab_netns.AGENT_PORT if link else 0}", "--data-dir",
               str(d / "data"), "--emulate", profile, "--port-file", str(port_file),
               "--threads", str(threads), "--inference-listen", inference_at,
               "--openai-listen", openai_at, *tls_args]
    log_from = _size(agent_log)
    agent = _spawn_agent(command, agent_log)
    device = LabDevice(name, profile, address, ssh_port, 0, str(d), sshd.pid,
                       _start_time(sshd.pid), agent.pid, _start_time(agent.pid), inference_port,
                       *net, [], *site)
    try:
        _wait_for(lambda: _port_open(address, ssh_port) or sshd.poll() is not None,
                  f"sshd for {name}", sshd_log)
        if sshd.poll() is not None:
            raise LabError(f"sshd for {name} exited with {sshd.returncode}",
                           hint=f"see {sshd_log}")
        _wait_for(lambda: port_file.exists() or agent.poll() is not None,
                  f"agent for {name}", agent_log)
        if agent.poll() is not None:
            raise LabError(f"agent for {name} exited with {agent.returncode}: "
                           f"{_last_line(agent_log, log_from)}", hint=f"see {agent_log}")
    except LabError:
        _stop(device)
        raise
    device.agent_port = int(port_file.read_text())
    listen = command.index("--listen") + 1
    command[listen] = f"{address}:{device.agent_port}"  # a restart binds the same port
    device.agent_cmd = command
    device.openai_port = openai_port
    return device


def _spawn_agent(command: list[str], log_path: Path) -> subprocess.Popen[bytes]:
    # Never inherit our stdout (see sshd above); the log is appended to across restarts.
    with log_path.open("a") as log:
        return subprocess.Popen(command, start_new_session=True, stdin=subprocess.DEVNULL,
                                stdout=log, stderr=subprocess.STDOUT)


def _stop_agent(device: LabDevice, timeout_s: float = 10.0, kill: bool = False) -> None:
    """Stop the device's agent (and its runtime workers) only; sshd and the store stay."""
    pid, start = device.agent_pid, device.agent_start
    if not _same_process(pid, start):
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL if kill else signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and _same_process(pid, start):
        _reap(pid)
        time.sleep(0.05)
    if _same_process(pid, start):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)
    _reap(pid)


def restart(lab_dir: Path, names: list[str] | None = None,
            kill: bool = False) -> list[LabDevice]:
    """Restart the agents of the named lab devices (all when ``names`` is empty), keeping
    their stores, as a device reboot or a crashed agent restarted by its service would.
    ``kill`` ends the old agent with SIGKILL instead of SIGTERM (a power cut). A device whose
    sshd died gets it back too. Returns the restarted devices."""
    devices = read_registry(lab_dir)
    if not devices:
        raise LabError("no lab is running", hint="start one: fleet lab up")
    known = {d.name for d in devices}
    unknown = sorted(set(names or []) - known)
    if unknown:
        raise LabError(f"no lab device named {', '.join(unknown)}",
                       hint=f"the lab has {', '.join(sorted(known))}")
    restarted = []
    for device in devices:
        if names and device.name not in names:
            continue
        if not device.agent_cmd:
            raise LabError(f"{device.name} was started by an older `fleet lab up` or without "
                           "an agent", hint="`fleet lab up` again (the stores are kept)")
        _stop_agent(device, kill=kill)
        d = Path(device.directory)
        if not _same_process(device.sshd_pid, device.sshd_start):
            prefix = device.link.exec_prefix if device.link else []
            sshd = subprocess.Popen([*prefix, find_sshd(), "-D", "-f", str(d / "sshd_config"),
                                     "-E", str(d / "sshd.log")], start_new_session=True,
                                    stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                    stderr=subprocess.DEVNULL)
            device.sshd_pid, device.sshd_start = sshd.pid, _start_time(sshd.pid)
        port_file = d / "agent.port"
        port_file.unlink(missing_ok=True)
        log_from = _size(d / "agent.log")
        agent = _spawn_agent(device.agent_cmd, d / "agent.log")
        device.agent_pid, device.agent_start = agent.pid, _start_time(agent.pid)
        write_registry(lab_dir, devices)  # recorded before waiting: lab down finds it
        _wait_for(lambda: port_file.exists() or agent.poll() is not None,  # noqa: B023
                  f"agent for {device.name}", d / "agent.log")
        if agent.poll() is not None:
            raise LabError(f"agent for {device.name} exited with {agent.returncode}: "
                           f"{_last_line(d / 'agent.log', log_from)}",
                           hint=f"see {d / 'agent.log'} (is its port "
                           f"{device.agent_port} taken?)")
        restarted.append(device)
    return restarted


def host_key_line(device: LabDevice) -> str:
    pub = Path(device.directory, "ssh_host_ed25519_key.pub").read_text().split()
    return f"[{device.address}]:{device.ssh_port} {pub[0]} {pub[1]}"


def _enrolled_agent(device: LabDevice) -> tuple[int, int]:
    """An agent that `fleet device enroll` started inside this lab device's directory."""
    try:
        pid = int(Path(device.directory, "agent.pid").read_text().strip())
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (OSError, ValueError):
        return 0, 0
    if device.directory.encode() not in cmdline and b"run-agent" not in cmdline:
        return 0, 0
    return pid, _start_time(pid)


def _stop(device: LabDevice, timeout_s: float = 10.0) -> None:
    targets = [(device.agent_pid, device.agent_start), _enrolled_agent(device),
               (device.sshd_pid, device.sshd_start)]
    live = [pid for pid, start in targets if _same_process(pid, start)]
    for pid in live:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    for pid in live:
        while time.monotonic() < deadline and _start_time(pid):
            _reap(pid)
            time.sleep(0.05)
        if _start_time(pid):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)
        _reap(pid)
    if device.link is not None:
        lab_netns.remove(device.link)


def _reap(pid: int) -> None:
    """Collect our own child's exit status so it does not linger as a zombie."""
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


def read_registry(lab_dir: Path) -> list[LabDevice]:
    path = lab_dir / "registry.json"
    try:
        return [LabDevice(**d) for d in json.loads(path.read_text())]
    except FileNotFoundError:
        return []
    except (ValueError, TypeError) as exc:
        raise LabError(f"{path} is unreadable ({exc})",
                       hint="stop the processes by hand and delete the file") from exc


def write_registry(lab_dir: Path, devices: list[LabDevice]) -> None:
    path = lab_dir / "registry.json"
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps([asdict(d) for d in devices], indent=2))
    tmp.replace(path)


def up(lab_dir: Path, profiles: list[str], tls: TlsFiles | None = None,
       start_agents: bool = True, netns: bool = False, netem: str = "",
       fresh: bool = False, site_lan: bool = False, uplink: str = "") -> list[LabDevice]:
    """Start one sshd + agent per profile. Stops a previous lab first; its devices' data
    (stores) are kept unless ``fresh``. With ``netns`` and ``site_lan`` the devices share
    one LAN behind one uplink (``uplink``: its tbf rate)."""
    down(lab_dir)
    lab_dir.mkdir(parents=True, exist_ok=True)
    key = client_key(lab_dir)
    authorized = lab_dir / "authorized_keys"
    authorized.write_text(Path(str(key) + ".pub").read_text())
    started: list[LabDevice] = []
    # Lab devices share this machine's cores: split them so one device's decode does not
    # starve the others (llama.cpp threads spin while they wait).
    threads = max(1, (os.cpu_count() or 1) // len(profiles))
    site = lab_netns.create_site(uplink) if netns and site_lan else None
    try:
        for i, profile in enumerate(profiles):
            link = (lab_netns.join_site(site, i) if site else
                    lab_netns.create(i, netem) if netns else None)
            try:
                started.append(start_device(lab_dir, i, profile, authorized, threads, tls,
                                            start_agents, link, keep_data=not fresh))
            except BaseException:
                if link is not None:
                    lab_netns.remove(link)
                raise
            if site is not None:
                started[-1].uplink_if = site.uplink_if
            write_registry(lab_dir, started)
    except Exception:
        for device in started:
            _stop(device)
        if site is not None:
            lab_netns.remove_site(site.netns, site.uplink_if)
        (lab_dir / "registry.json").unlink(missing_ok=True)
        raise
    return started


def down(lab_dir: Path) -> list[LabDevice]:
    devices = read_registry(lab_dir)
    for device in devices:
        _stop(device)
    for netns, uplink in {(d.host_netns, d.uplink_if) for d in devices if d.host_netns}:
        lab_netns.remove_site(netns, uplink)
    (lab_dir / "registry.json").unlink(missing_ok=True)
    return devices
