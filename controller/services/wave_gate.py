"""Between two waves: what the last wave's devices served since they finished, from the
telemetry collector, judged against ``--wave-max-p95-ttft`` and ``--wave-max-error-rate``
(controller.core.gates.judge_wave). A wave whose devices miss a limit stops the rollout."""

from __future__ import annotations

import time

from controller.adapters.rollout_repo import SqlRolloutLog, utc
from controller.core.gates import ServedWindow, WaveGates, judge_wave
from controller.services import telemetry_query
from controller.services.collecting import collect_once
from controller.services.context import Fleet

COLLECT_TIMEOUT_S = 10.0


def judge(fleet: Fleet, log: SqlRolloutLog, rollout: str, devices: list[str],
          gates: WaveGates) -> tuple[str, str]:
    """(problem, note) for ``devices`` (committed in the wave just finished)."""
    if not devices or not gates.any:
        return "", ""
    rows = {r.device: r for r in log.devices(rollout)}
    ended = [utc(rows[d].finished_at) for d in devices if d in rows and rows[d].finished_at]
    since = min(e.timestamp() for e in ended if e is not None) if ended else time.time()
    known = [d for d in fleet.inventory.list_devices() if d.name in set(devices)]
    collect_once(fleet, known, timeout_s=COLLECT_TIMEOUT_S)  # what they served up to now
    now = time.time()
    report = telemetry_query.report(fleet, known, max(1.0, now - since), by="device", now=now)
    by_device = {r.key.get("device", ""): r for r in report.rows}
    served = []
    for name in devices:
        row = by_device.get(name)
        served.append(ServedWindow(name, row.requests if row else 0, row.errors if row else 0,
                                   row.ttft_p95 if row else None))
    return judge_wave(gates, served)
