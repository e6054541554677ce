"""Is the process driving a rollout still there?

A driver writes a heartbeat every ``FLEET_ROLLOUT_HEARTBEAT_S`` (5 s); one without a heartbeat
for 6 of those is gone. A driver on this very host is also gone as soon as its pid is (a
killed controller's rollout can be taken over at once, not 30 s later). Controller ids are
``host:pid``.
"""

from __future__ import annotations

import os
import socket
from datetime import datetime, timezone


def heartbeat_s() -> float:
    """``FLEET_ROLLOUT_HEARTBEAT_S``: how often a driving controller says it is alive."""
    return float(os.environ.get("FLEET_ROLLOUT_HEARTBEAT_S") or 5.0)


def stale_after_s() -> float:
    """No heartbeat for this long: the driver is gone (the rollout reads interrupted)."""
    return 6 * heartbeat_s()


def controller_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def driver_alive(controller: str, heartbeat_at: datetime | None,
                 now: datetime | None = None) -> bool:
    if not controller or heartbeat_at is None:
        return False
    now = now or datetime.now(timezone.utc)
    if (now - heartbeat_at).total_seconds() > stale_after_s():
        return False
    host, _, pid = controller.rpartition(":")
    if host == socket.gethostname() and pid.isdigit():
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
    return True
