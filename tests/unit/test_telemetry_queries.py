"""Telemetry queries, alerts, retention and settings over a real SQLite database written by the
collector's own writer (SqlTelemetry.store) with known records."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from controller.adapters.tables import Device
from controller.adapters.telemetry_db import SqlTelemetry
from controller.core.alerts import DeviceFacts, Gap, evaluate
from controller.core.sketch import ALPHA, percentile
from controller.core.telemetry_records import Fetched, LiveState, ModelSeen, RequestIn, SampleIn
from controller.errors import UsageError
from controller.services import monitor_settings, retention, telemetry_query
from controller.services.context import Fleet

SHA = {"q4_k_m": "a" * 64, "q8_0": "b" * 64}


def _fleet(home: Path) -> Fleet:
    fleet = Fleet.open()
    for name, profile, group in (("d1", "rpi5-8gb", "kiosks"), ("d2", "rpi5-8gb", "kiosks"),
                                 ("d3", "jetson-orin-nano-8gb", "lab")):
        fleet.inventory.add_device(Device(name=name, host="127.0.0.1",
                                          profile=profile, labels_json='{"site": "berlin"}'
                                          if name == "d1" else "{}"), groups=[group])
    return fleet


def _write(fleet: Fleet, device: str, variant: str, meter: str, ttfts: list[float],
           tps: float, watts: float, start: float, seq0: int = 0) -> None:
    sha = SHA[variant]
    requests = [RequestIn(seq0 + i + 1, start + i, sha, variant, t, t + 500, 20, 40,
                          tps + i % 3, 100.0, "error" if i == 0 else "ok", 4.0, meter, 1)
                for i, t in enumerate(ttfts)]
    samples = [SampleIn(seq0 + i + 1, start + i * 10, 10.0, 50.0, 1, watts, watts * 10, meter,
                        {"cpu": 60.0}, False, (), 0.0, 0, sha) for i in range(6)]
    live = LiveState(ModelSeen(sha, "phi3-mini", variant), None, False, 0, len(ttfts), watts,
                     meter, 50.0, 1, 2, 60.0, "serving")
    SqlTelemetry(fleet.inventory.engine).store([Fetched(device, start + 60, 0.1, "e-" + device,
                                                        requests, "s-" + device, samples, 10.0,
                                                        live)])


def test_raw_percentiles_are_exact_and_rollups_within_alpha(home: Path) -> None:
    fleet = _fleet(home)
    now = time.time()
    ttfts = [float(v) for v in range(100, 1100, 10)]  # 100 requests, the first an error
    _write(fleet, "d1", "q4_k_m", "pi5-pmic", ttfts, 8.0, 6.0, now - 600)
    devices = fleet.inventory.list_devices()
    raw = telemetry_query.report(fleet, devices, 3600, "device", now=now)
    row = next(r for r in raw.rows if r.key["device"] == "d1")
    ok = ttfts[1:]
    assert raw.source == "raw" and row.requests == 100 and row.errors == 1
    assert row.ttft_p95 == percentile(ok, 0.95) and row.ttft_p50 == percentile(ok, 0.5)
    rolled = telemetry_query.report(fleet, devices, 3600, "device", now=now, rollups=True)
    r2 = next(r for r in rolled.rows if r.key["device"] == "d1")
    assert rolled.source == "minute rollups" and r2.requests == 100
    for exact, approx in ((row.ttft_p95, r2.ttft_p95), (row.ttft_p99, r2.ttft_p99),
                          (row.tps_p5, r2.tps_p5)):
        assert exact is not None and approx is not None
        assert abs(approx - exact) <= ALPHA * exact + 1e-9
    # beyond the raw retention the rollups answer, and say so
    monitor_settings.put(fleet, "fleet", {"raw_days": 0.001})
    old = telemetry_query.report(fleet, devices, 3600, "device", now=now)
    assert old.source == "minute rollups" and "within 1%" in old.accuracy


def test_energy_of_different_meters_is_never_added_up(home: Path) -> None:
    fleet = _fleet(home)
    now = time.time()
    _write(fleet, "d1", "q4_k_m", "pi5-pmic", [200.0] * 10, 8.0, 6.0, now - 600)
    _write(fleet, "d2", "q4_k_m", "estimated", [300.0] * 10, 7.0, 9.0, now - 600)
    monitor_settings.put(fleet, "group:kiosks", {monitor_settings.GRID: 300.0})
    monitor_settings.put(fleet, "label:site=berlin", {monitor_settings.GRID: 100.0})
    rep = telemetry_query.report(fleet, fleet.inventory.list_devices(), 3600, "variant",
                                 now=now)
    (row,) = rep.rows
    assert row.key == {"model": "phi3-mini", "variant": "q4_k_m", "profile": "rpi5-8gb"}
    by_meter = {f.meter: f for f in row.energy}
    assert set(by_meter) == {"pi5-pmic", "estimated"}
    assert by_meter["pi5-pmic"].measured and not by_meter["estimated"].measured
    assert by_meter["pi5-pmic"].wh == pytest.approx(6.0 * 60 / 3600)
    # d1 has the label (100 g/kWh, most specific), d2 only the group's 300
    assert by_meter["pi5-pmic"].gco2e == pytest.approx(6.0 * 60 / 3.6e6 * 100)
    assert by_meter["estimated"].gco2e == pytest.approx(9.0 * 60 / 3.6e6 * 300)
    assert by_meter["estimated"].joules_per_token == pytest.approx(4.0 / 40)


def test_prediction_off_by_more_than_30_percent_is_flagged(home: Path) -> None:
    fleet = _fleet(home)
    now = time.time()
    _write(fleet, "d3", "q8_0", "estimated", [100.0] * 5, 1.0, 5.0, now - 300)
    rep = telemetry_query.report(fleet, fleet.inventory.list_devices(), 3600, "device",
                                 now=now)
    (row,) = [r for r in rep.rows if r.key["device"] == "d3"]
    assert row.predicted_tps and row.predicted_tps > 5  # the cost model: an Orin, phi3 q8_0
    assert row.tps_off is not None and row.tps_off < -0.3
    assert "fleet device calibrate d3" in row.flag


def test_retention_deletes_raw_rows_past_their_time_and_keeps_rollups(home: Path) -> None:
    fleet = _fleet(home)
    now = time.time()
    _write(fleet, "d1", "q4_k_m", "rapl", [100.0] * 5, 8.0, 6.0, now - 9 * 86400)
    deleted = retention.prune(fleet, now)
    assert deleted["telemetry_request"] == 5 and deleted["telemetry_sample"] == 6
    assert deleted["minute rollups"] == 0
    rep = telemetry_query.report(fleet, fleet.inventory.list_devices(), 10 * 86400, "device",
                                 now=now)
    assert rep.source == "minute rollups" and rep.rows[0].requests == 5


def test_settings_scopes_and_bad_input() -> None:
    assert monitor_settings.scope_of(None, None) == "fleet"
    assert monitor_settings.scope_of("g", None) == "group:g"
    assert monitor_settings.scope_of(None, "site=berlin") == "label:site=berlin"
    with pytest.raises(UsageError):
        monitor_settings.scope_of("g", "a=b")
    with pytest.raises(UsageError):
        telemetry_query.parse_since("soon")
    assert telemetry_query.parse_since("15m") == 900 and telemetry_query.parse_since("2d") == 172800


def test_alert_rules() -> None:
    base = DeviceFacts(device="d", group="g", state="deployed", reachable=True)
    assert evaluate([base]) == []
    facts = [
        DeviceFacts("a", "g", "unreachable", False, last_ok=5.0, last_error="refused"),
        DeviceFacts("b", "g", "deployed", True, crashes_recent=3),
        DeviceFacts("c", "g", "drifted", True, drift="runs x"),
        DeviceFacts("d", "g", "deployed", True, throttled=True, throttle_reasons="pi:throttled"),
        DeviceFacts("e", "g", "deployed", True, ttft_p95_ms=900, slo_p95_ttft_ms=800,
                    tps_p50=3.0, slo_min_tps=5.0, slo_scope="group:g"),
        DeviceFacts("f", "g", "deployed", True, gaps=(
            Gap("records-lost", 1.0, 2.0, 40, "dropped 40"), Gap("unreachable", 1, 2, 0, "")),
            tps_off=-0.5),
    ]
    got = [(a.device, a.kind, a.severity) for a in evaluate(facts)]
    assert got == [("a", "unreachable", "critical"), ("b", "crash-loop", "critical"),
                   ("c", "drift", "warning"), ("d", "throttling", "warning"),
                   ("e", "slo-breach", "warning"), ("e", "slo-breach", "warning"),
                   ("f", "telemetry-gap", "warning"), ("f", "prediction-off", "info")]
