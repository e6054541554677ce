"""How a persisted rollout reads: a ``running`` rollout whose driver stopped beating, or
whose process on this host is gone, is ``interrupted``."""

from __future__ import annotations

import socket
import subprocess
from datetime import datetime, timedelta, timezone

from controller.liveness import controller_id, stale_after_s
from controller.services.history import status_of
from controller.services.ports import Rollout

NOW = datetime.now(timezone.utc)


def _rollout(status: str, beat_s_ago: float | None, controller: str = "") -> Rollout:
    beat = None if beat_s_ago is None else NOW - timedelta(seconds=beat_s_ago)
    return Rollout("r", "m", status, {}, [1], heartbeat_at=beat,
                   controller=controller or controller_id())


def test_a_running_rollout_without_a_recent_heartbeat_reads_interrupted() -> None:
    assert status_of(_rollout("running", 1), NOW) == "running"
    assert status_of(_rollout("running", stale_after_s() + 1), NOW) == "interrupted"
    assert status_of(_rollout("running", None), NOW) == "interrupted"
    assert status_of(_rollout("paused", 10_000), NOW) == "paused"
    assert status_of(_rollout("completed", 10_000), NOW) == "completed"


def test_a_driver_whose_process_is_gone_on_this_host_reads_interrupted_at_once() -> None:
    gone = subprocess.Popen(["true"])
    gone.wait()
    dead = f"{socket.gethostname()}:{gone.pid}"
    assert status_of(_rollout("running", 1, dead), NOW) == "interrupted"
    # another host's controller is judged by its heartbeat alone
    assert status_of(_rollout("running", 1, "elsewhere:1"), NOW) == "running"
