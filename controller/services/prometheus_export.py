"""Prometheus exposition for `fleet monitor --metrics HOST:PORT`, through prometheus_client.

The monitor feeds every newly stored record and sample to ``FleetMetrics.observe`` once (the
collector never stores one twice), so histograms and counters count each request exactly once
per monitor process; a restarted monitor starts its counters at zero, which Prometheus reads
as a counter reset (``rate()`` and ``increase()`` handle it). Names and units follow the
Prometheus conventions: base units (seconds, joules, bytes), ``_total`` for counters.
"""

from __future__ import annotations

import time
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info
from prometheus_client.exposition import start_http_server

from controller.adapters.tables import Device
from controller.core.telemetry_records import Fetched, Stored, Unreached
from controller.errors import UsageError
from controller.services.context import Fleet

TTFT_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)
REQ = ("device", "group", "model", "variant")
DEV = ("device", "group")
LABELS_TTL_S = 10.0


class FleetMetrics:
    def __init__(self, fleet: Fleet) -> None:
        self.fleet = fleet
        self.registry = CollectorRegistry()
        r = self.registry
        self.ttft = Histogram("edgefleet_request_ttft_seconds", "Time to first token.",
                              REQ, buckets=TTFT_BUCKETS, registry=r)
        self.latency = Histogram("edgefleet_request_duration_seconds",
                                 "Request latency, first prompt token in to last token out.",
                                 REQ, buckets=LATENCY_BUCKETS, registry=r)
        self.requests = Counter("edgefleet_requests", "Requests by outcome (ok, error, "
                                "cancelled).", (*REQ, "outcome"), registry=r)
        self.errors = Counter("edgefleet_request_errors", "Requests that failed.", REQ,
                              registry=r)
        self.tokens = Counter("edgefleet_tokens", "Tokens processed (kind: prompt or "
                              "completion).", (*REQ, "kind"), registry=r)
        self.request_joules = Counter("edgefleet_request_energy_joules", "Energy of requests, "
                                      "by the meter that measured or estimated it.",
                                      (*REQ, "meter"), registry=r)
        self.device_joules = Counter("edgefleet_device_energy_joules", "Energy of the whole "
                                     "device (its kept samples), by meter.", (*DEV, "meter"),
                                     registry=r)
        self.crashes = Counter("edgefleet_worker_crashes", "Runtime worker crashes.", DEV,
                               registry=r)
        self.gaps = Counter("edgefleet_telemetry_gaps", "Telemetry gaps recorded (kind: "
                            "unreachable, records-lost, samples-lost, agent-down, reset).",
                            (*DEV, "kind"), registry=r)
        self.tps = Gauge("edgefleet_decode_tokens_per_second", "Decode speed of the last "
                         "successful request.", REQ, registry=r)
        self.power = Gauge("edgefleet_power_watts", "Mean power over the last kept sample.",
                           (*DEV, "meter"), registry=r)
        self.temperature = Gauge("edgefleet_temperature_celsius", "Thermal zone temperature.",
                                 (*DEV, "zone"), registry=r)
        self.cpu = Gauge("edgefleet_cpu_utilization_ratio", "CPU busy share (0-1).", DEV,
                         registry=r)
        self.memory = Gauge("edgefleet_memory_used_bytes", "RAM in use.", DEV, registry=r)
        self.throttled = Gauge("edgefleet_throttled", "1 while the device throttles.", DEV,
                               registry=r)
        self.up = Gauge("edgefleet_device_up", "1 when the last contact succeeded.", DEV,
                        registry=r)
        self.info = Info("edgefleet_device", "What each device is and runs.", ("device",),
                         registry=r)
        self._crashes_seen: dict[str, int] = {}
        self._devices: dict[str, Device] = {}
        self._devices_at = 0.0

    def _device(self, name: str) -> Device | None:
        if time.monotonic() - self._devices_at > LABELS_TTL_S or name not in self._devices:
            self._devices = {d.name: d for d in self.fleet.inventory.list_devices()}
            self._devices_at = time.monotonic()
        return self._devices.get(name)

    def observe(self, stored: list[Stored], results: list[Fetched | Unreached]) -> None:
        by_name = {s.device: s for s in stored}
        for result in results:
            device = self._device(result.device)
            group = ",".join(device.group_names) if device else ""
            dev = (result.device, group)
            s = by_name.get(result.device)
            for kind in s.gaps if s else []:
                self.gaps.labels(*dev, kind).inc()
            if isinstance(result, Unreached):
                self.up.labels(*dev).set(0)
                self.info.labels(result.device).info(self._info(device, "unreachable"))
                continue
            self.up.labels(*dev).set(1)
            live = result.live
            self.info.labels(result.device).info(self._info(device, live.state, result))
            seen = self._crashes_seen.get(result.device)
            if seen is not None and live.worker_crashes != seen:
                # a restarted agent counts from 0 again
                self.crashes.labels(*dev).inc(live.worker_crashes - seen
                                              if live.worker_crashes > seen
                                              else live.worker_crashes)
            self._crashes_seen[result.device] = live.worker_crashes
            variants = {m.sha256: m for m in (live.active, live.previous) if m}
            for r in s.requests if s else []:
                model = variants[r.sha256].name if r.sha256 in variants else ""
                labels = (*dev, model, r.variant)
                self.requests.labels(*labels, r.outcome).inc()
                self.tokens.labels(*labels, "prompt").inc(r.prompt_tokens)
                self.tokens.labels(*labels, "completion").inc(r.completion_tokens)
                if r.energy_j > 0:
                    self.request_joules.labels(*labels, r.meter).inc(r.energy_j)
                if r.outcome == "error":
                    self.errors.labels(*labels).inc()
                if r.outcome == "ok":
                    self.ttft.labels(*labels).observe(r.ttft_ms / 1000)
                    self.latency.labels(*labels).observe(r.total_ms / 1000)
                    if r.completion_tokens > 1:
                        self.tps.labels(*labels).set(r.decode_tps)
            for x in s.samples if s else []:
                # the series exists from the first sample, even at 0 J (meter "none")
                self.device_joules.labels(*dev, x.meter).inc(max(0.0, x.energy_j))
            if s and s.samples:
                last = s.samples[-1]
                self.power.labels(*dev, last.meter).set(last.power_w)
                self.cpu.labels(*dev).set(last.cpu_percent / 100)
                self.memory.labels(*dev).set(last.ram_used_bytes)
                self.throttled.labels(*dev).set(1 if last.throttled else 0)
                for zone, celsius in last.temperatures_c.items():
                    self.temperature.labels(*dev, zone).set(celsius)

    @staticmethod
    def _info(device: Device | None, state: str, got: Fetched | None = None) -> dict[str, str]:
        active = got.live.active if got else None
        return {"group": ",".join(device.group_names) if device else "",
                "profile": device.profile if device else "",
                "model": active.name if active else (device.model if device else ""),
                "variant": active.variant if active else (device.variant if device else ""),
                "state": state}


def serve(metrics: FleetMetrics, address: str) -> WSGIServer:
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit():
        raise UsageError(f"--metrics {address!r} is not HOST:PORT", hint="e.g. 127.0.0.1:9464")
    try:
        server, _thread = start_http_server(int(port), addr=host.strip("[]") or "0.0.0.0",
                                            registry=metrics.registry)
    except OSError as exc:
        raise UsageError(f"cannot serve metrics on {address}: {exc.strerror}",
                         hint="pick a free port, e.g. --metrics 127.0.0.1:9464") from exc
    return server
