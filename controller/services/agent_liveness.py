"""Whether the agent that enrollment, an upgrade or a rescue just started on a device still
runs, and if not, why: so that they stop waiting for an agent that has already exited and say
what its log said, instead of a timeout two minutes later.

How the agent was started (``enrolling._start``) decides how to tell: started with a pid
file, a process that is gone (or a zombie, or a reused pid) stays gone; under systemd
(``Restart=always``, every 3 s) one restart can be a transient failure (a port still held for
a moment), a second one is a crash loop (``_start`` resets the unit's count first). The log
is appended to across runs, so only what this run wrote is read (from ``log_size`` taken
before the start). What cannot be told over SSH right now counts as "still starting": the
caller's timeout decides then, as before.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Protocol

from controller.adapters.remote import Ran, q
from controller.core.launch_scripts import UNIT, is_agent_process
from controller.core.log_lines import last_error
from controller.errors import FleetError

CRASH_LOOP_RESTARTS = 2
LOG_LINES = 40
ASK_EVERY_S = 2.0  # an SSH command at most this often while a caller waits


class Runner(Protocol):
    def run(self, command: str, timeout_s: float = 120.0) -> Ran: ...


def log_size(remote: Runner, base: str) -> int:
    """The agent log's size now (0 when there is none): where the next run's lines start."""
    try:
        out = remote.run(f"stat -c %s {q(base)}/agent.log 2>/dev/null || echo 0",
                         timeout_s=15).out.strip()
    except FleetError:
        return 0
    return int(out) if out.isdigit() else 0


def exited(remote: Runner, base: str, how: str, log_from: int = 0) -> str:
    """'' while the agent runs (or might still come up), else why it does not: "the agent
    exited: <the error line it logged since ``log_from``>"."""
    try:
        if how == "systemd-user":
            restarts = remote.run(f"systemctl --user show -p NRestarts --value {UNIT}",
                                  timeout_s=15).out.strip()
            if not (restarts.isdigit() and int(restarts) >= CRASH_LOOP_RESTARTS):
                return ""
            what = f"the agent exited and was restarted {restarts} times"
        else:
            running = f"p=$(cat {q(f'{base}/agent.pid')}) && {is_agent_process('$p')}"
            if remote.run(running, timeout_s=15).code == 0:
                return ""
            what = "the agent exited"
        log = remote.run(f"tail -c +{log_from + 1} {q(base)}/agent.log 2>/dev/null | "
                         f"tail -n {LOG_LINES}", timeout_s=15).out
    except FleetError:
        return ""
    line = last_error(log)
    return f"{what}: {line}" if line else f"{what} without writing to its log"


@dataclass
class Watch:
    """An agent just started (``enrolling._start``): ``how`` ("systemd-user" or "pidfile"),
    and where its log stood then. ``exited`` may be called on every poll of a wait; it asks
    the device at most every ``ASK_EVERY_S``."""

    remote: Runner
    base: str
    how: str
    log_from: int
    _next_ask: float = field(default_factory=lambda: time.monotonic() + ASK_EVERY_S)

    def exited(self) -> str:
        """'' while the agent runs or is not due to be asked again; else why it does not."""
        if time.monotonic() < self._next_ask:
            return ""
        self._next_ask = time.monotonic() + ASK_EVERY_S
        return exited(self.remote, self.base, self.how, self.log_from)
