"""What would stop a deploy, judged from facts gathered elsewhere. Pure.

Each finding is a ``Check``: on a target (the controller or a device), about one thing (ssh,
agent, version, certificate, clock, disk, database), at a level (``ok``, ``warn``: works but
needs attention, ``problem``: a deploy would fail or be refused, ``unknown``: could not be
seen because something before it failed), with what was seen and the fix.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from agent.contract import AGENT_CAPABILITIES, DISK_MARGIN_BYTES
from controller.core.compat import MAX_CLOCK_SKEW_S, AgentVersion, missing, needed

OK, WARN, PROBLEM, UNKNOWN = "ok", "warn", "problem", "unknown"
CERT_WARN_DAYS = 30
CERT_PROBLEM_DAYS = 7
DISK_WARN_BYTES = 1 << 30  # below this a small model still fits, a bigger one will not
CONTROLLER = "controller"


@dataclass(frozen=True)
class Check:
    target: str  # "controller" or a device name
    what: str  # ssh | agent | version | cert | clock | disk | database | pki | ...
    level: str
    detail: str
    fix: str = ""
    unreachable: bool = False  # a problem of reaching the device, not of the device
    short: str = ""  # what a table cell shows (the level when empty)

    @property
    def cell(self) -> str:
        return self.short or self.level


def cert_check(target: str, what: str, expires: datetime | None, now: datetime,
               fix: str) -> Check:
    if expires is None:
        return Check(target, what, UNKNOWN, "no certificate found", fix)
    days = (expires - now).total_seconds() / 86400
    when = expires.strftime("%Y-%m-%d")
    if days <= 0:
        return Check(target, what, PROBLEM, f"expired on {when}", fix, short="expired")
    short = f"{days:.0f} d left" if days >= 1 else f"{days * 24:.0f} h left"
    if days < CERT_PROBLEM_DAYS:
        return Check(target, what, PROBLEM, f"expires in {days:.1f} days ({when})", fix,
                     short=short)
    if days < CERT_WARN_DAYS:
        return Check(target, what, WARN, f"expires in {days:.0f} days ({when})", fix,
                     short=short)
    return Check(target, what, OK, f"valid until {when} ({days:.0f} days)", short=short)


def version_checks(device: str, agent: AgentVersion, controller_version: str) -> list[Check]:
    """The agent's version and capabilities, and its clock."""
    fix = f"fleet device upgrade {device}"
    lacking = missing(agent, needed(False))
    extra = sorted({c.value for c in AGENT_CAPABILITIES} - agent.capabilities)
    if lacking:
        version = Check(device, "version", PROBLEM,
                        f"{agent.describe()}; lacks {', '.join(lacking)} (deploys refused)", fix,
                        short=agent.version or "old (<0.2)")
    elif agent.version != controller_version or extra:
        version = Check(device, "version", WARN,
                        f"agent {agent.version}, controller {controller_version}"
                        + (f"; lacks {', '.join(extra)}" if extra else ""), fix,
                        short=agent.version)
    else:
        version = Check(device, "version", OK, f"agent {agent.version} (contract "
                        f"{agent.contract}, {len(agent.capabilities)} capabilities)",
                        short=agent.version)
    if agent.clock_skew_s is None:
        clock = Check(device, "clock", UNKNOWN, "the agent does not tell its time", fix)
    elif abs(agent.clock_skew_s) > MAX_CLOCK_SKEW_S:
        clock = Check(device, "clock", PROBLEM,
                      f"{'ahead' if agent.clock_skew_s > 0 else 'behind'} by "
                      f"{abs(agent.clock_skew_s):.0f} s (telemetry times and certificate "
                      "validity go wrong)",
                      "turn on time sync on the device: timedatectl set-ntp true (or chrony)",
                      short=f"{agent.clock_skew_s:+.0f} s")
    else:
        clock = Check(device, "clock", OK, f"{agent.clock_skew_s:+.2f} s against the "
                      "controller", short=f"{agent.clock_skew_s:+.2f} s")
    return [version, clock]


def disk_check(target: str, free_bytes: int | None, where: str, fix: str) -> Check:
    if free_bytes is None:
        return Check(target, "disk", UNKNOWN, f"free space {where} not known", fix)
    short = f"{free_bytes / 2**30:.1f} GiB"
    text = f"{short} free {where}"
    if free_bytes < 2 * DISK_MARGIN_BYTES:
        return Check(target, "disk", PROBLEM, text + " (no model fits)", fix, short=short)
    if free_bytes < DISK_WARN_BYTES:
        return Check(target, "disk", WARN, text, fix, short=short)
    return Check(target, "disk", OK, text, short=short)


def exit_code(checks: list[Check]) -> int:
    """0 nothing stops a deploy, 1 a problem, 4 the only problems are devices out of reach."""
    problems = [c for c in checks if c.level == PROBLEM]
    if not problems:
        return 0
    return 4 if all(c.unreachable for c in problems) else 1
