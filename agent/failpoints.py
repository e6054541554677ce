"""Named fault-injection points for crash tests ("failpoints").

``FLEET_AGENT_FAILPOINTS=a,b`` makes the agent SIGKILL itself when it reaches point ``a`` or
``b``: the test then restarts it and checks that nothing is half-done. Unset (always, in
production) a failpoint costs one set lookup.
"""

from __future__ import annotations

import os
import signal

_ACTIVE = frozenset(p for p in os.environ.get("FLEET_AGENT_FAILPOINTS", "").split(",") if p)
_armed = False  # armed once the agent has restored its model and serves requests

POINTS = (
    "verify.before_move",  # staged bytes hashed, not yet moved into blobs/
    "verify.after_move",  # blob moved, model not yet loaded
    "load.after_worker",  # the new worker runs, not yet smoke-tested
    "activate.before_state",  # smoke test passed, state.json not yet replaced
    "activate.after_state",  # state.json replaced, the answer not yet sent
)


def arm() -> None:
    global _armed
    _armed = True


def hit(name: str) -> None:
    if _armed and name in _ACTIVE:
        os.kill(os.getpid(), signal.SIGKILL)
