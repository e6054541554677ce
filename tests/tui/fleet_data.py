"""A fixed four-device fleet written through the collector's own writer (SqlTelemetry.store),
with times relative to the current minute, so snapshots render the same on every run."""

from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone

from controller.adapters.rollout_repo import SqlRolloutLog
from controller.adapters.tables import Device, PlanPrediction
from controller.adapters.telemetry_db import SqlTelemetry
from controller.core.steps import Step
from controller.core.telemetry_records import (
    Fetched,
    LiveState,
    ModelSeen,
    RequestIn,
    SampleIn,
    Unreached,
)
from controller.services.context import Fleet
from controller.services.ports import Artifact, DeviceJob, Rollout

SHA = {"q2_k": "a" * 64, "q4_k_m": "b" * 64, "q8_0": "c" * 64}
DEVICES = (("lab-1", "lab-pi4-2gb", "q2_k", 190.0, 6.0),
           ("lab-2", "lab-pi5-8gb", "q4_k_m", 120.0, 9.5),
           ("lab-3", "lab-orin-nano-8gb", "q8_0", 80.0, 14.0),
           ("lab-4", "lab-n100-16gb", "q8_0", 60.0, 24.0))


def settle() -> float:
    """A time well inside a minute (nothing crosses a minute boundary while rendering)."""
    while time.time() % 60 > 45:
        time.sleep(0.5)
    return time.time()


def fill(fleet: Fleet) -> float:
    now = settle()
    minute = now // 60 * 60
    inv = fleet.inventory
    for name, profile, variant, _tps, _w in DEVICES:
        inv.add_device(Device(name=name, host="127.0.0.1", agent_port=1,
                              profile=profile, model="tiny-llama", variant=variant,
                              sha256=SHA[variant], labels_json='{"site": "berlin"}'
                              if name in ("lab-1", "lab-2") else '{"site": "paris"}'),
                       groups=["kiosks"])
    store = SqlTelemetry(inv.engine)
    results: list[Fetched | Unreached] = []
    for i, (name, _profile, variant, tps, watts) in enumerate(DEVICES):
        sha = SHA[variant]
        requests = [RequestIn(n + 1, minute - (40 - 3 * n) * 60 - 5, sha, variant,
                              40.0 + 10 * i + (n % 4) * 5, 400.0 + 50 * i, 24, 32,
                              tps - (n % 5) * 4, 900.0, "ok" if n % 9 else "error",
                              32 * watts / tps, "estimated", 90_000_000) for n in range(14)]
        samples = [SampleIn(n + 1, minute - (59 - n) * 60 + 10, 60.0, 30.0 + n % 20,
                            700_000_000, watts + (n % 6) * 0.5, (watts + (n % 6) * 0.5) * 60,
                            "estimated", {"cpu-thermal": 48.0 + i * 6 + (n % 10)},
                            name == "lab-3" and n > 55,
                            ("thermal:cpu-thermal 86.0>=85.0 C passive",)
                            if name == "lab-3" and n > 55 else (), 1500.0, i == 2 and n > 50,
                            sha) for n in range(60)]
        running = SHA["q4_k_m"] if name == "lab-4" else sha  # lab-4 drifted
        live = LiveState(ModelSeen(running, "tiny-llama", "q4_k_m" if name == "lab-4"
                                   else variant), None, False, 0, 14, watts, "estimated", 35.0,
                         700_000_000, 2_000_000_000, 55.0 + i,
                         "drifted" if name == "lab-4" else "deployed",
                         "runs tiny-llama q4_k_m; the fleet deployed tiny-llama q8_0"
                         if name == "lab-4" else "")
        results.append(Fetched(name, now - 5, 0.05, "epoch-" + name, requests,
                               "s-epoch-" + name, samples, 60.0, live))
    store.store(results)
    store.store([Unreached("lab-2", now - 3, 2.0, "lab-2: agent at 127.0.0.1:1 not reachable "
                           "(UNAVAILABLE: connection refused)")])
    old = datetime.fromtimestamp(now, timezone.utc) - timedelta(hours=2, minutes=30)
    recent = datetime.fromtimestamp(now, timezone.utc) - timedelta(seconds=20)
    log = SqlRolloutLog(inv)

    def job(i: int, name: str, variant: str, step: Step, reason: str) -> DeviceJob:
        art = Artifact("tiny-llama", variant, "gguf", SHA[variant], 100, f"/m/{variant}")
        return DeviceJob(name, i, 0, step, art, choice=f"{variant}: highest quality that fits",
                         reason=reason)

    log.create(Rollout("r-older", "tiny-llama", "completed", {}, [4], created_at=old,
                       heartbeat_at=old),
               [job(i, name, variant, Step.COMMITTED, f"{variant}: highest quality that fits")
                for i, (name, _p, variant, _t, _w) in enumerate(DEVICES)])
    log.release("r-older", [d[0] for d in DEVICES])
    with inv.session() as s:
        for name, profile, variant, tps, watts in DEVICES:
            s.add(PlanPrediction(rollout="r-live", device=name, model="tiny-llama",
                                 variant=variant, sha256=SHA[variant], profile=profile,
                                 tokens_per_s=tps * (2.0 if name == "lab-1" else 1.1),
                                 ttft_ms=45.0, joules_per_token=watts / tps, prompt_tokens=24,
                                 ctx=512, created_at=recent))
        s.commit()
    live = [job(i, name, variant, Step.PLANNED, "waiting for its turn")
            for i, (name, _p, variant, _t, _w) in enumerate(DEVICES)]
    log.create(Rollout("r-live", "tiny-llama", "running", {}, [4], controller="snapshot",
                       created_at=recent, heartbeat_at=datetime.fromtimestamp(now + 3600,
                                                                           timezone.utc)),
               live)
    for j, step, reason in ((live[0], Step.COMMITTED, "q2_k: highest quality that fits"),
                            (live[2], Step.ROLLED_BACK, "health check failed: measured decode "
                             "61.0 tok/s < --min-tps 70; the device went back to q8_0"),
                            (live[3], Step.UPLOADING, "sending 40.0 MiB")):
        j.step, j.reason = step, reason
        log.record("r-live", j)
    log.progress("r-live", "lab-4", 63)  # "uploading 63%"
    return now
