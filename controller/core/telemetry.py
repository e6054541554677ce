"""Pure telemetry logic: following an agent's log by cursor, bucketing, gaps in samples.

The collector (``controller.services.collecting``) does the I/O; what it decides lives here
so every branch is a table test.
"""

from __future__ import annotations

from dataclasses import dataclass

MINUTE = 60
HOUR = 3600
ROLLUP_PERIODS = (MINUTE, HOUR)
# a device whose kept samples are further apart than this many intervals was not sampling:
# its agent was not running
AGENT_DOWN_INTERVALS = 3.0


@dataclass(frozen=True)
class Cursor:
    epoch: str = ""  # the agent log's identity as last seen ("": never read)
    epoch_no: int = 0  # rows are stored under this number
    last_seq: int = 0


@dataclass(frozen=True)
class Followed:
    cursor: Cursor
    seqs: list[int]  # the entries to store, in order, none at or below the old cursor
    reset: bool  # the agent's log started over (new epoch) after we had read from it
    lost: int  # entries dropped by the agent before we read them


def follow(cursor: Cursor, epoch: str, seqs: list[int]) -> Followed:
    """Where ``seqs`` (what the agent returned after ``cursor.last_seq``, or after 0 when its
    epoch changed) leave the cursor. Anything at or below the cursor is dropped here, so a
    page read twice (two collectors, a retried pass) stores nothing twice."""
    reset = bool(cursor.epoch) and epoch != cursor.epoch
    base = Cursor(epoch, cursor.epoch_no + 1, 0) if epoch != cursor.epoch else cursor
    fresh = [s for s in seqs if s > base.last_seq]
    lost = 0
    expected = base.last_seq + 1
    # the first contact with a log is no gap: what came before was never ours to read
    if fresh and (base.last_seq > 0 or reset):
        for seq in fresh:
            if seq > expected:
                lost += seq - expected
            expected = seq + 1
    elif fresh:
        expected = fresh[-1] + 1
    last = fresh[-1] if fresh else base.last_seq
    return Followed(Cursor(epoch, base.epoch_no, last), fresh, reset, lost)


def bucket(ts: float, period: int) -> int:
    return int(ts // period) * period


def sample_gaps(previous_ts: float | None, stamps: list[float], every_s: float
                ) -> list[tuple[float, float]]:
    """(start, end) of stretches without samples longer than AGENT_DOWN_INTERVALS intervals."""
    if every_s <= 0:
        return []
    gaps = []
    last = previous_ts
    for ts in stamps:
        if last is not None and ts - last > AGENT_DOWN_INTERVALS * every_s:
            gaps.append((last, ts))
        last = ts
    return gaps


def ratio_off(measured: float | None, predicted: float | None) -> float | None:
    """measured / predicted - 1 (e.g. -0.42: 42 % below the prediction); None if unknown."""
    if not measured or not predicted or predicted <= 0:
        return None
    return measured / predicted - 1.0


def device_state(online: bool, active_sha256: str, on_trial: bool, deployed_sha256: str) -> str:
    """What a device is doing, seen against what the fleet last deployed to it:
    unreachable | on trial (loaded, not yet committed) | deployed (runs what was deployed) |
    drifted (runs something else, or nothing) | serving (a model nobody deployed) | idle."""
    if not online:
        return "unreachable"
    if on_trial:
        return "on trial"
    if deployed_sha256:
        return "deployed" if active_sha256 == deployed_sha256 else "drifted"
    return "serving" if active_sha256 else "idle"
