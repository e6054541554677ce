"""`fleet telemetry`: requests, errors, latency percentiles, speed, energy and carbon over a
window, grouped by device, variant (model + variant + profile) or profile, beside what the
selector predicted.

Windows inside the raw retention read raw records: percentiles are exact (linear
interpolation between ranks). Older windows read per-minute rollups (or per-hour beyond their
retention): percentiles come from merged log-bucket sketches, within ``sketch.ALPHA`` (1 %)
of the exact value. Energy is never summed across meters: every figure names its meter, and
measured and estimated joules stay apart.
"""

from __future__ import annotations

import re
import time
from collections import defaultdict
from dataclasses import dataclass, field
from statistics import median
from typing import Any

from controller.adapters.tables import Device
from controller.adapters.telemetry_read import SqlTelemetryReader
from controller.core.sketch import ALPHA, Sketch, percentile
from controller.core.telemetry import HOUR, MINUTE, ratio_off
from controller.errors import UsageError
from controller.services import monitor_settings, predictions
from controller.services.context import Fleet

BY = ("device", "variant", "profile", "fleet")
OFF_LIMIT = 0.30  # prediction vs measurement beyond ±30 %: suggest calibration
_SINCE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|min|h|d|w)?\s*$")
_UNIT = {"s": 1, "m": 60, "min": 60, "h": 3600, "d": 86400, "w": 604800, None: 1}
UNMEASURED = ("estimated", "none", "")


def parse_since(text: str) -> float:
    """``90s``, ``15m``, ``1h``, ``7d``, ``2w`` -> seconds."""
    m = _SINCE.match(text or "")
    if not m or float(m.group(1)) <= 0:
        raise UsageError(f"--since {text!r} is not a duration", hint="e.g. --since 15m, 1h, 7d")
    return float(m.group(1)) * _UNIT[m.group(2)]


@dataclass
class EnergyFigure:
    meter: str
    measured: bool
    request_joules: float = 0.0
    request_tokens: int = 0  # completion tokens of the requests with energy under this meter
    device_joules: float = 0.0  # whole-device energy from the kept samples
    device_seconds: float = 0.0
    gco2e: float = 0.0
    grid: set[str] = field(default_factory=set)  # "475 g/kWh (default)", ...

    @property
    def joules_per_token(self) -> float | None:
        return self.request_joules / self.request_tokens if self.request_tokens else None

    @property
    def wh(self) -> float:
        return self.device_joules / 3600

    @property
    def power_w(self) -> float | None:
        return self.device_joules / self.device_seconds if self.device_seconds > 0 else None


@dataclass
class TelemetryRow:
    key: dict[str, str]
    devices: list[str] = field(default_factory=list)
    requests: int = 0
    errors: int = 0
    cancelled: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    ttft_p50: float | None = None
    ttft_p95: float | None = None
    ttft_p99: float | None = None
    tps_p50: float | None = None
    tps_p5: float | None = None
    energy: list[EnergyFigure] = field(default_factory=list)
    predicted_tps: float | None = None
    predicted_ttft_ms: float | None = None
    tps_off: float | None = None  # measured p50 / predicted - 1
    ttft_off: float | None = None
    flag: str = ""  # set when a prediction is off by more than OFF_LIMIT

    @property
    def error_rate(self) -> float | None:
        return self.errors / self.requests if self.requests else None


@dataclass
class TelemetryReport:
    by: str
    since_s: float
    source: str  # raw | minute rollups | hour rollups
    accuracy: str
    rows: list[TelemetryRow]


class _Acc:
    def __init__(self, exact: bool) -> None:
        self.exact = exact
        self.ttft: list[float] = []
        self.tps: list[float] = []
        self.ttft_sk = Sketch()
        self.tps_sk = Sketch()
        self.prompts: list[float] = []
        self.counts: dict[str, int] = defaultdict(int)
        self.devices: set[str] = set()
        self.energy: dict[str, EnergyFigure] = {}
        self.variants: dict[tuple[str, str, str], int] = defaultdict(int)  # (dev, model, var)

    def figure(self, meter: str) -> EnergyFigure:
        if meter not in self.energy:
            self.energy[meter] = EnergyFigure(meter, meter not in UNMEASURED)
        return self.energy[meter]

    def quantile(self, which: str, q: float) -> float | None:
        if self.exact:
            return percentile(self.ttft if which == "ttft" else self.tps, q)
        return (self.ttft_sk if which == "ttft" else self.tps_sk).quantile(q)


def _source(since_s: float, keep: dict[str, float]) -> tuple[str, int]:
    if since_s <= keep["raw_days"] * 86400:
        return "raw", 0
    if since_s <= keep["minute_days"] * 86400:
        return "minute rollups", MINUTE
    return "hour rollups", HOUR


def report(fleet: Fleet, devices: list[Device], since_s: float, by: str = "device",
           model: str | None = None, now: float | None = None,
           rollups: bool = False) -> TelemetryReport:
    """``rollups`` reads per-minute rollups even inside the raw retention (cheaper: alerts
    and the dashboard)."""
    if by not in BY:
        raise UsageError(f"--by {by!r} is not one of {', '.join(BY[:3])}",
                         hint="e.g. --by variant")
    now = time.time() if now is None else now
    since = now - since_s
    settings = monitor_settings.load(fleet)
    source, period = _source(since_s, settings.retention())
    if rollups and period == 0:
        source, period = "minute rollups", MINUTE
    reader = SqlTelemetryReader(fleet.inventory.engine)
    models = reader.models()
    by_name = {d.name: d for d in devices}
    names = sorted(by_name)

    def key_of(device: str, model_id: int) -> tuple[str, ...] | None:
        _sha, mname, variant = models.get(model_id, ("", "", ""))
        if model and mname != model:
            return None
        d = by_name[device]
        if by == "device":
            return (device,)
        if by == "variant":
            if not model_id:
                return None  # no model loaded: energy no variant spent
            return (mname or "?", variant or "?", d.profile or "-")
        return (d.profile or "-",) if by == "profile" else ("fleet",)

    accs: dict[tuple[str, ...], _Acc] = {}

    def acc(key: tuple[str, ...]) -> _Acc:
        return accs.setdefault(key, _Acc(period == 0))

    if period == 0:
        for r in reader.requests(names, since, now):
            key = key_of(r.device, r.model_id)
            if key is None:
                continue
            a = acc(key)
            _count(a, r.device, models.get(r.model_id), r.outcome, r.prompt_tokens,
                   r.completion_tokens)
            if r.outcome == "ok":
                a.ttft.append(r.ttft_ms)
                a.prompts.append(r.prompt_tokens)
                if r.completion_tokens > 1:
                    a.tps.append(r.decode_tps)
            if r.energy_j > 0 and r.completion_tokens:
                f = a.figure(r.meter)
                f.request_joules += r.energy_j
                f.request_tokens += r.completion_tokens
        samples: list[Any] = reader.samples(names, since, now)
    else:
        for r in reader.request_rollups(names, period, since - since % period, now):
            key = key_of(r.device, r.model_id)
            if key is None:
                continue
            a = acc(key)
            a.devices.add(r.device)
            m = models.get(r.model_id)
            if m:
                a.variants[(r.device, m[1], m[2])] += r.requests
            for k in ("requests", "errors", "cancelled", "prompt_tokens", "completion_tokens"):
                a.counts[k] += getattr(r, k)
            a.ttft_sk.merge(Sketch.decode(r.ttft_sketch))
            a.tps_sk.merge(Sketch.decode(r.tps_sketch))
            if r.energy_j > 0 and r.completion_tokens:
                f = a.figure(r.meter)
                f.request_joules += r.energy_j
                f.request_tokens += r.completion_tokens
        samples = reader.sample_rollups(names, period, since - since % period, now)
    for s in samples:
        key = key_of(s.device, s.model_id)
        if key is None:
            continue
        a = acc(key)
        a.devices.add(s.device)
        f = a.figure(s.meter)
        seconds = s.interval_s if period == 0 else s.seconds
        f.device_joules += s.energy_j
        f.device_seconds += seconds
        grid, scope = settings.grid(by_name[s.device])
        f.gco2e += s.energy_j / 3.6e6 * grid
        f.grid.add(f"{grid:g} g/kWh ({scope})")
    ordered = sorted(accs.items())
    rows = [_row(by, key, a) for key, a in ordered]
    _predict(fleet, by_name, rows, [a for _, a in ordered])
    accuracy = "exact" if period == 0 else f"percentiles within {ALPHA:.0%} (merged sketches)"
    return TelemetryReport(by, since_s, source, accuracy, rows)


def _count(a: _Acc, device: str, model: tuple[str, str, str] | None, outcome: str,
           prompt: int, completion: int) -> None:
    a.devices.add(device)
    a.counts["requests"] += 1
    a.counts["errors"] += outcome == "error"
    a.counts["cancelled"] += outcome == "cancelled"
    a.counts["prompt_tokens"] += prompt
    a.counts["completion_tokens"] += completion
    if model:
        a.variants[(device, model[1], model[2])] += 1


def _row(by: str, key: tuple[str, ...], a: _Acc) -> TelemetryRow:
    names = {"device": ("device",), "variant": ("model", "variant", "profile"),
             "profile": ("profile",), "fleet": ("fleet",)}[by]
    return TelemetryRow(
        key=dict(zip(names, key, strict=True)), devices=sorted(a.devices),
        requests=a.counts["requests"], errors=a.counts["errors"],
        cancelled=a.counts["cancelled"], prompt_tokens=a.counts["prompt_tokens"],
        completion_tokens=a.counts["completion_tokens"],
        ttft_p50=a.quantile("ttft", 0.5), ttft_p95=a.quantile("ttft", 0.95),
        ttft_p99=a.quantile("ttft", 0.99), tps_p50=a.quantile("tps", 0.5),
        tps_p5=a.quantile("tps", 0.05),
        energy=sorted(a.energy.values(), key=lambda f: (not f.measured, f.meter)))


def _predict(fleet: Fleet, devices: dict[str, Device], rows: list[TelemetryRow],
             accs: list[_Acc]) -> None:
    """Beside each row of one variant (by variant) or one device (its most used variant):
    the selector's prediction, and a flag when the measurement is off by more than 30 %."""
    wanted: dict[int, list[tuple[str, str, str]]] = {}
    for i, (row, a) in enumerate(zip(rows, accs, strict=True)):
        if not a.variants or "profile" in row.key and "variant" not in row.key:
            continue
        if "device" in row.key:
            wanted[i] = [max(a.variants, key=lambda k: a.variants[k])]
        elif "variant" in row.key:
            wanted[i] = list(a.variants)
    keys = {k for ks in wanted.values() for k in ks if k[1]}
    found = predictions.lookup(fleet, devices, keys)
    for i, ks in wanted.items():
        row, a = rows[i], accs[i]
        preds = [found[k] for k in ks if k in found]
        if not preds:
            continue
        row.predicted_tps = sum(p.tokens_per_s for p in preds) / len(preds) or None
        base = sum(p.ttft_ms for p in preds) / len(preds)
        prompt = sum(p.prompt_tokens for p in preds) / len(preds)
        # TTFT is predicted for a prompt length; scale it to the prompts really sent
        if base and prompt and a.prompts:
            row.predicted_ttft_ms = base * median(a.prompts) / prompt
        row.tps_off = ratio_off(row.tps_p50, row.predicted_tps)
        row.ttft_off = ratio_off(row.ttft_p50, row.predicted_ttft_ms)
        if row.tps_off is not None and abs(row.tps_off) > OFF_LIMIT:
            who = row.key.get("device") or (row.devices[0] if len(row.devices) == 1
                                            else "DEVICE")
            row.flag = (f"decode {row.tps_off:+.0%} vs predicted: run `fleet device "
                        f"calibrate {who}`")
