"""`fleet device upgrade`: put this controller's agent on devices in place, over SSH, the way
enrollment installed it, canaried like a model rollout, and back out where it does not come up.

Per device: ask the agent what it is (GetVersion; nothing to do when it already runs this
version with every capability); install the wheel into the agent's venv keeping the one it
replaces (``controller.services.agent_wheels``); restart the agent (its service, or its pid
file); wait until it answers as the new version from a new process, its health service says
SERVING and the model it ran before is active and serving again. Otherwise the kept wheel is
reinstalled and the agent restarted (``reverted``). The store, the certificates and
``run-agent.sh`` are never touched.

Order: the first ``canary`` devices one at a time; any failure stops the upgrade before
another device starts (the rest are ``halted``), as a failing canary stops a rollout; then the
others, ``concurrency`` at a time. A device that cannot be reached says nothing about the new
agent: it is ``unreachable`` and the upgrade goes on.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING

from agent.contract import AGENT_CAPABILITIES
from controller.adapters.device_link import agent_version
from controller.adapters.remote import RemoteHost, q
from controller.core.compat import AgentVersion
from controller.errors import FleetError, Unreachable
from controller.services import agent_wheels
from controller.services.enrolling import _base, _start

if TYPE_CHECKING:
    from controller.adapters.tables import Device
    from controller.services.context import Fleet

FAILED = ("reverted", "failed", "halted")


@dataclass(frozen=True)
class UpgradeOutcome:
    device: str
    status: str  # upgraded | unchanged | reverted | failed | unreachable | skipped | halted
    before: str  # the agent version found ("" unknown: no GetVersion, or not reachable)
    after: str  # the version running at the end
    reason: str
    hint: str = ""
    seconds: float = 0.0

    @property
    def failed(self) -> bool:
        return self.status in FAILED


@dataclass(frozen=True)
class Seen:
    """What an agent was running before the upgrade."""

    agent: AgentVersion | None  # None: not reachable over gRPC
    active: str = ""  # sha256 of its active model
    error: str = ""


def _seen(fleet: Fleet, device: Device) -> Seen:
    try:
        with fleet.client(device, timeout_s=10) as client:
            sent = time.time()
            answer = client.get_version()
            agent = agent_version(answer, sent, time.time())
            return Seen(agent, client.get_store().active_sha256)
    except FleetError as exc:
        return Seen(None, error=exc.message)


def _healthy(fleet: Fleet, device: Device, version: str, before: Seen) -> str:
    """'' when the new agent is up: answering as ``version`` from a new process, SERVING,
    with the model it had active and serving; otherwise what is missing."""
    with fleet.client(device, timeout_s=5) as client:
        sent = time.time()
        now = agent_version(client.get_version(), sent, time.time())
        if now.legacy:
            return "an agent without GetVersion answers (the old one still runs?)"
        if now.version != version:
            return f"the agent answers as {now.version}, not {version}"
        if before.agent and before.agent.started_unix and (
                now.started_unix == before.agent.started_unix):
            return "the agent that answers is the process from before the restart"
        if not client.agent_serving():
            return "its health service does not say SERVING"
        if before.active:
            active = client.get_store().active_sha256
            if active != before.active:
                return (f"its model {before.active[:12]} is not active again (runs "
                        f"{active[:12] or 'nothing'})")
            if not client.model_serving():
                return f"its model {before.active[:12]} is not serving"
    return ""


def _wait(fleet: Fleet, device: Device, version: str, before: Seen, timeout_s: float,
          gone: Callable[[], str]) -> str:
    """'' once the new agent answers healthy; else why not: ``gone()`` (it exited:
    ``agent_liveness.Watch.exited``, so a broken agent is backed out at once) or the
    timeout's last answer."""
    deadline = time.monotonic() + timeout_s
    why = "no answer yet"
    while time.monotonic() < deadline:
        try:
            why = _healthy(fleet, device, version, before)
        except FleetError as exc:
            why = exc.message
        if not why:
            return ""
        exited = gone()
        if exited:
            return exited
        time.sleep(1.0)
    return f"not up within {timeout_s:.0f} s: {why}"


def _answers(fleet: Fleet, device: Device, timeout_s: float) -> str:
    """The version of whatever agent answers within ``timeout_s`` ('' for none)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with contextlib.suppress(FleetError), fleet.client(device, timeout_s=5) as client:
            answer = client.get_version()
            return answer.agent_version if answer else client.get_profile().agent_version
        time.sleep(1.0)
    return ""


def upgrade_device(fleet: Fleet, device: Device, wheel: agent_wheels.Wheel,
                   timeout_s: float, force: bool = False) -> UpgradeOutcome:
    started = time.monotonic()

    def done(status: str, before: str, after: str, reason: str, hint: str = "") -> UpgradeOutcome:
        return UpgradeOutcome(device.name, status, before, after, reason, hint,
                              time.monotonic() - started)

    seen = _seen(fleet, device)
    had = seen.agent.version if seen.agent else ""
    complete = seen.agent is not None and not (
        {c.value for c in AGENT_CAPABILITIES} - seen.agent.capabilities)
    if seen.agent and had == wheel.version and complete and not force:
        return done("unchanged", had, had, f"already runs agent {had}")
    try:
        ssh = fleet.transfer.connect(fleet.ssh_target(device))
    except Unreachable as exc:
        return done("unreachable", had, had, exc.message, exc.hint)
    try:
        remote = RemoteHost(device.name, ssh)
        base = _base(remote, device.data_dir)
        if remote.run(f"test -x {q(base)}/run-agent.sh && test -x {q(base)}/venv/bin/python"
                      ).code != 0:
            if device.lab:
                return done("skipped", had, had, "a lab agent runs from this checkout (fleet "
                            f"lab up), not from an installed wheel; it runs {had or 'unknown'}",
                            "restart the lab to run this checkout: fleet lab up; or start the "
                            "lab with --sshd-only and enroll it")
            return done("failed", had, had, f"no enrolled agent under {base}",
                        f"install it first: fleet device enroll {device.name}")
        current = agent_wheels.adopt_current(remote, base)
        # installed already but not what runs (a restart that never happened): go back to
        # the one before it if need be
        kept = current if current != wheel.rel else agent_wheels.previous(remote, base)
        if not kept:
            return done("failed", had, had, "no wheel of the running agent is kept on the "
                        "device to go back to, so it is not upgraded in place",
                        f"re-enroll it (its store is kept): fleet device enroll {device.name}")
        extras = agent_wheels.read_extras(remote, base)
        if current != wheel.rel or force:
            agent_wheels.install(remote, base, wheel, extras)
        watch = _start(remote, base)
        why = _wait(fleet, device, wheel.version, seen, timeout_s, watch.exited)
        if not why:
            return done("upgraded", had, wheel.version,
                        f"agent {had or 'of unknown version'} -> {wheel.version}; store and "
                        "certificates kept" + (f"; model {seen.active[:12]} active again"
                                               if seen.active else ""))
        return _revert(fleet, device, remote, base, kept, extras, wheel, had, why, timeout_s,
                       done)
    except FleetError as exc:
        return done("failed", had, "", exc.message, exc.hint or
                    f"`fleet device rescue {device.name}` shows the agent's log")
    finally:
        ssh.close()


def _revert(fleet: Fleet, device: Device, remote: RemoteHost, base: str, kept: str,
            extras: str, wheel: agent_wheels.Wheel, had: str, why: str, timeout_s: float,
            done: Callable[..., UpgradeOutcome]) -> UpgradeOutcome:
    agent_wheels.reinstall(remote, base, kept, extras, failed=wheel.rel)
    _start(remote, base)
    back = _answers(fleet, device, timeout_s)
    old = agent_wheels.version_of(kept)
    if back:
        return done("reverted", had, back, f"the new agent {wheel.version} did not come up "
                    f"healthy ({why}); reinstalled {old} and it answers as {back}",
                    f"`fleet device rescue {device.name}` shows the agent's log")
    return done("failed", had, "", f"the new agent {wheel.version} did not come up healthy "
                f"({why}), and {old} reinstalled does not answer either",
                f"`fleet device rescue {device.name}` restarts it and shows its log")


def upgrade(fleet: Fleet, devices: list[Device], wheel: agent_wheels.Wheel,
            timeout_s: float = 120.0, canary: int = 1, concurrency: int = 4,
            force: bool = False,
            on_outcome: Callable[[UpgradeOutcome], None] = lambda o: None
            ) -> list[UpgradeOutcome]:
    """Every device's outcome, in the order given."""
    results: dict[str, UpgradeOutcome] = {}
    stop = threading.Event()

    def one(device: Device) -> None:
        if stop.is_set():
            outcome = UpgradeOutcome(device.name, "halted", "", "", "not started: an earlier "
                                     "device's upgrade failed", "see that device's reason; "
                                     "fix it, then run the upgrade again")
        else:
            outcome = upgrade_device(fleet, device, wheel, timeout_s, force)
            if outcome.failed:
                stop.set()
        results[device.name] = outcome
        on_outcome(outcome)

    rest = list(devices)
    vouched = 0
    while rest and vouched < canary and not stop.is_set():
        device = rest.pop(0)
        one(device)
        vouched += results[device.name].status == "upgraded"
    with ThreadPoolExecutor(max_workers=max(1, concurrency)) as pool:
        list(pool.map(one, rest))
    return [results[d.name] for d in devices]
