"""Alerts as data: pure rules over what the database knows of each device.

| kind | severity | when |
|---|---|---|
| unreachable | critical | the last contact failed (since: the last good one) |
| crash-loop | critical | CRASH_LOOP runtime worker crashes within CRASH_WINDOW_S |
| throttling | warning | the last kept sample says the platform throttles |
| drift | warning | the device runs something other than what the fleet deployed |
| slo-breach | warning | p95 TTFT above, or median decode tok/s below, the group's SLO |
| telemetry-gap | warning | records or samples lost, the agent down, or its log reset |
| prediction-off | info | measured decode speed off the selector's prediction by > 30 % |
"""

from __future__ import annotations

from dataclasses import dataclass, field

CRASH_LOOP = 3
CRASH_WINDOW_S = 600.0
GAP_WINDOW_S = 86400.0
SEVERITY_ORDER = {"critical": 0, "warning": 1, "info": 2}


@dataclass(frozen=True)
class Gap:
    kind: str
    start: float
    end: float | None
    lost: int
    detail: str


@dataclass(frozen=True)
class DeviceFacts:
    device: str
    group: str
    state: str
    reachable: bool
    last_ok: float | None = None
    last_error: str = ""
    crashes_recent: int = 0
    throttled: bool = False
    throttle_reasons: str = ""
    gaps: tuple[Gap, ...] = ()
    requests_recent: int = 0
    ttft_p95_ms: float | None = None
    tps_p50: float | None = None
    slo_p95_ttft_ms: float | None = None
    slo_min_tps: float | None = None
    slo_scope: str = ""
    tps_off: float | None = None
    drift: str = ""


@dataclass(frozen=True)
class Alert:
    kind: str
    severity: str
    device: str
    group: str
    message: str
    hint: str = ""
    since: float | None = None
    details: dict[str, float | str] = field(default_factory=dict)


def evaluate(facts: list[DeviceFacts], window_label: str = "15 min") -> list[Alert]:
    out: list[Alert] = []
    for f in facts:
        out += _device_alerts(f, window_label)
    return sorted(out, key=lambda a: (SEVERITY_ORDER[a.severity], a.device, a.kind))


def _device_alerts(f: DeviceFacts, window_label: str) -> list[Alert]:
    out: list[Alert] = []

    def add(kind: str, severity: str, message: str, hint: str = "",
            since: float | None = None, **details: float | str) -> None:
        out.append(Alert(kind, severity, f.device, f.group, message, hint, since, details))

    if f.state == "unreachable":
        add("unreachable", "critical", f"not reachable: {f.last_error or 'no answer'}",
            "is the agent running? `fleet device rescue " + f.device + "` restarts it",
            f.last_ok)
    if f.crashes_recent >= CRASH_LOOP:
        add("crash-loop", "critical", f"runtime worker crashed {f.crashes_recent} times "
            f"in {CRASH_WINDOW_S / 60:.0f} min", "see the agent log; deploy a smaller "
            "variant or roll back (`fleet rollouts`)", crashes=f.crashes_recent)
    if f.throttled:
        add("throttling", "warning", f.throttle_reasons or "the platform says so",
            "check cooling and the power supply; speed is reduced while it lasts")
    if f.state == "drifted":
        add("drift", "warning", f.drift or "runs something other than what was deployed",
            f"deploy again to bring {f.device} back to the fleet's model")
    if f.slo_p95_ttft_ms and f.ttft_p95_ms is not None and f.ttft_p95_ms > f.slo_p95_ttft_ms:
        add("slo-breach", "warning", f"p95 TTFT {f.ttft_p95_ms:.0f} ms > SLO "
            f"{f.slo_p95_ttft_ms:g} ms ({f.slo_scope}) over the last {window_label}",
            "a faster variant (`fleet plan --prefer speed`) or less load",
            p95_ttft_ms=round(f.ttft_p95_ms, 1), slo=f.slo_p95_ttft_ms)
    if f.slo_min_tps and f.tps_p50 is not None and f.tps_p50 < f.slo_min_tps:
        add("slo-breach", "warning", f"median decode {f.tps_p50:.1f} tok/s < SLO "
            f"{f.slo_min_tps:g} tok/s ({f.slo_scope}) over the last {window_label}",
            "a smaller variant (`fleet plan --prefer speed`)",
            tps_p50=round(f.tps_p50, 2), slo=f.slo_min_tps)
    for g in f.gaps:
        if g.kind == "unreachable":
            continue  # the unreachable alert covers an open one; a closed one lost nothing
        add("telemetry-gap", "warning", f"{g.kind}: {g.detail}",
            "raise FLEET_AGENT_TELEMETRY_RECORDS on the device, or collect more often"
            if g.kind.endswith("-lost") else "", g.start, gap=g.kind, lost=g.lost)
    if f.tps_off is not None and abs(f.tps_off) > 0.30:
        add("prediction-off", "info", f"decode speed {f.tps_off:+.0%} vs the selector's "
            "prediction", f"`fleet device calibrate {f.device}` measures it and corrects "
            "later plans", off=round(f.tps_off, 3))
    return out
