"""Whether the agent that enrollment or an upgrade just started on a device still runs, and
if not, why: so that they stop waiting for an agent that has already exited and say what its
log said, instead of a timeout two minutes later.

How the agent was started (``enrolling._start``) decides how to tell: started with a pid
file, a process that is gone stays gone; under systemd (``Restart=always``, every 3 s) one
restart can be a transient failure (a port still held for a moment), a second one in a row
is a crash loop.
"""

from __future__ import annotations

from controller.adapters.remote import RemoteHost, q
from controller.core.launch_scripts import UNIT
from controller.core.log_lines import last_error

CRASH_LOOP_RESTARTS = 2
LOG_LINES = 40


def exited(remote: RemoteHost, base: str, how: str) -> str:
    """'' while the agent runs (or might still come up), else why it does not: "the agent
    exited: <its log's error line>"."""
    if how == "systemd-user":
        ran = remote.run(f"systemctl --user show -p NRestarts --value {UNIT}", timeout_s=15)
        restarts = ran.out.strip()
        if not (restarts.isdigit() and int(restarts) >= CRASH_LOOP_RESTARTS):
            return ""
        what = f"the agent exited and was restarted {restarts} times"
    else:
        pidfile = f"{base}/agent.pid"
        if remote.run(f"p=$(cat {q(pidfile)}) && kill -0 \"$p\"", timeout_s=15).code == 0:
            return ""
        what = "the agent exited"
    log = remote.run(f"tail -n {LOG_LINES} {q(base)}/agent.log", timeout_s=15).out
    line = last_error(log)
    return f"{what}: {line}" if line else f"{what} (its log is empty)"
