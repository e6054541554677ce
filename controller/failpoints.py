"""Named fault-injection points in the controller, for crash tests ("failpoints").

``FLEET_FAILPOINTS=after:uploading,upload.half`` makes the controller SIGKILL itself when it
reaches one of those points (a rollout step just recorded, an upload half-way), so a test can
check that `fleet rollouts resume` finishes the job. Unset (always, in production) a
failpoint costs one set lookup.
"""

from __future__ import annotations

import os
import signal

_ACTIVE = frozenset(p for p in os.environ.get("FLEET_FAILPOINTS", "").split(",") if p)


def armed(name: str) -> bool:
    """Whether ``name`` is set (a code path may then make its point reachable for sure)."""
    return name in _ACTIVE


def hit(name: str) -> None:
    if name in _ACTIVE:
        os.kill(os.getpid(), signal.SIGKILL)
