"""The collector: pulls request records and device samples from each agent by cursor into the
database (`fleet collect`: one pass; `fleet monitor`: a pass every few seconds).

Per device, one contact: ``ListModels`` and ``GetTelemetry`` pages after the stored cursors,
each call with a deadline, at most ``MAX_PAGES`` pages (the rest next time). Contacts run on a
bounded pool of daemon threads; finished contacts are written in batches, one transaction per
batch (``SqlTelemetry.store``), so nothing is stored twice or half. A device being contacted is
not contacted again until that contact ends, and an unreachable one is retried with backoff:
one slow or dead agent never holds up the others.

    Collector ── submit(devices) ──▶ pool: fetch(device) ──▶ queue ──▶ drain(): store(batch)
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from agent.rpc import agent_pb2 as pb
from controller.adapters.agent_client import GrpcAgentClient
from controller.adapters.device_models_db import SqlDeviceModels
from controller.adapters.tables import Device
from controller.adapters.telemetry_db import SqlTelemetry
from controller.core.device_models import DeviceModel
from controller.core.telemetry import device_state
from controller.core.telemetry_records import (
    CONTACT_TIMEOUT_S,
    Cursors,
    Fetched,
    LiveState,
    ModelSeen,
    RequestIn,
    SampleIn,
    Stored,
    Unreached,
)
from controller.errors import FleetError
from controller.services.context import Fleet

PAGE = 2000  # records (and samples) per GetTelemetry call
MAX_PAGES = 10  # per contact: a device with a big backlog is caught up over a few passes
DEFAULT_TIMEOUT_S = CONTACT_TIMEOUT_S  # the whole contact with one device
BACKOFF_MAX_S = 60.0
BATCH = 200  # contacts per write transaction
MODELS_EVERY_S = 30.0  # a busy device's models (resident, last used) read at most this often


def _model(info: pb.ModelInfo | None) -> ModelSeen | None:
    return ModelSeen(info.sha256, info.name, info.variant) if info is not None else None


def _request(r: pb.RequestRecord) -> RequestIn:
    return RequestIn(r.seq, r.timestamp, r.sha256, r.variant, r.ttft_ms, r.total_ms,
                     r.prompt_tokens, r.completion_tokens, r.decode_tokens_per_s,
                     r.prefill_tokens_per_s, r.outcome or "ok", r.energy_j,
                     r.energy_meter or "none", r.peak_rss_bytes, r.model, r.adapter,
                     r.load_wait_ms)


def _sample(s: pb.DeviceSample) -> SampleIn:
    return SampleIn(s.seq, s.timestamp, s.interval_s, s.cpu_percent, s.ram_used_bytes,
                    s.power_w, s.energy_j, s.energy_meter or "none", dict(s.temperatures_c),
                    s.throttled, tuple(s.throttle_reasons), s.cpu_freq_mhz, s.worker_crashes,
                    s.active_sha256)


def fetch(fleet: Fleet, device: Device, cursors: Cursors,
          timeout_s: float = DEFAULT_TIMEOUT_S,
          client: GrpcAgentClient | None = None,
          models_due: bool = True) -> Fetched | Unreached:
    """One contact with one agent; never raises for the device's sake. ``client``: a kept
    connection to reuse (the caller closes it); else one is opened and closed here."""
    started = time.monotonic()
    try:
        if client is not None:
            return _contact(client, device, cursors, started, timeout_s, models_due)
        with fleet.client(device, timeout_s=timeout_s) as own:
            return _contact(own, device, cursors, started, timeout_s, models_due)
    except FleetError as exc:
        return Unreached(device.name, time.time(), time.monotonic() - started, exc.message)


def _contact(client: GrpcAgentClient, device: Device, cursors: Cursors, started: float,
             timeout_s: float, models_due: bool = True) -> Fetched:
    deadline = started + timeout_s

    def left() -> float:
        return max(0.05, deadline - time.monotonic())

    requests: list[RequestIn] = []
    samples: list[SampleIn] = []
    after, epoch = cursors.last_seq, cursors.epoch
    after_s, sample_epoch = cursors.last_sample_seq, cursors.sample_epoch
    live = None
    complete = False
    every = 0.0
    for _ in range(MAX_PAGES):
        resp = client.telemetry_since(after, after_s, PAGE, left())
        live = live or resp.sample
        every = resp.sample_every_s
        again = False
        if resp.epoch != epoch:  # first contact, or the log started over: from 1
            again, epoch, requests = after > 0, resp.epoch, []
            after = 0
        if resp.sample_epoch != sample_epoch:
            again, sample_epoch, samples = again or after_s > 0, resp.sample_epoch, []
            after_s = 0
        if again:
            continue
        requests += [_request(r) for r in resp.records]
        samples += [_sample(s) for s in resp.samples]
        after = requests[-1].seq if requests else after
        after_s = samples[-1].seq if samples else after_s
        if after >= resp.last_seq and after_s >= resp.last_sample_seq:
            complete = True
            break
        if time.monotonic() >= deadline:
            break
    assert live is not None
    known = cursors.active
    active: ModelSeen | None
    previous: ModelSeen | None
    same = bool(known is not None and live.active_sha256
                and live.active_sha256 == known.sha256)
    # every model it runs, when they may have changed: another model, an agent restarted, or
    # (at most every MODELS_EVERY_S) requests served: a model unloaded or loaded on demand
    listed = (client.list_models(timeout=left())
              if not same or epoch != cursors.epoch or (requests and models_due) else None)
    if same:
        # the same model as last time: its names are known, the trial flag came live
        active, previous, on_trial = known, cursors.previous, live.active_on_trial
    else:
        models = listed or []
        # of several active models, the one the fleet deployed last, else the agent's most
        # recent load: another model running beside it is no drift
        actives = [m for m in models if m.active and m.format != "lora"]
        info = next((m for m in actives if m.sha256 == device.sha256), None) or next(
            (m for m in actives if m.sha256 == live.active_sha256), None) or next(
            iter(actives), None)
        before = next((m for m in models if not m.active and m.format != "lora"), None)
        active, previous = _model(info), _model(before)
        on_trial = bool(info and info.on_trial)
    state = device_state(True, active.sha256 if active else "", on_trial, device.sha256)
    drift = ""
    if state == "drifted":
        runs = f"{active.name} {active.variant}" if active else "no model"
        drift = f"runs {runs}; the fleet deployed {device.model} {device.variant}"
    temps = dict(live.temperatures_c)
    return Fetched(
        device.name, time.time(), time.monotonic() - started, epoch, requests, sample_epoch,
        samples, every,
        LiveState(active, previous, on_trial, live.worker_crashes, live.requests_total,
                  live.power_w or None, live.energy_meter, live.cpu_percent,
                  live.ram_used_bytes, live.ram_total_bytes, max(temps.values(), default=None),
                  state, drift),
        complete, None if listed is None else _device_models(listed))


def _device_models(listed: list[pb.ModelInfo]) -> tuple[DeviceModel, ...]:
    """The active models of a ListModels answer (one per slot on an agent of several); a
    LoRA adapter is not a model of its own: the active one (on trial, else the default) is
    named on the model whose file it applies on."""
    adapters = {m.base_sha256: m.name for m in listed if m.active and m.format == "lora"}
    return tuple(sorted((DeviceModel(m.name, m.variant, m.sha256, tuple(sorted(m.aliases)),
                                     m.pinned, m.resident or m.worker_pid > 0, m.on_trial,
                                     m.memory_bytes, m.last_used_at,
                                     adapters.get(m.sha256, ""))
                         for m in listed if m.active and m.format != "lora"),
                        key=lambda m: m.name))


@dataclass
class PassReport:
    devices: int = 0
    reached: list[str] = field(default_factory=list)
    unreachable: dict[str, str] = field(default_factory=dict)  # device -> why
    incomplete: list[str] = field(default_factory=list)  # more was waiting; next pass
    requests: int = 0
    samples: int = 0
    gaps: list[tuple[str, str]] = field(default_factory=list)  # (device, kind)
    seconds: float = 0.0


class Collector:
    """A bounded pool of daemon threads contacting agents, and the batched writer."""

    def __init__(self, fleet: Fleet, concurrency: int = 32,
                 timeout_s: float = DEFAULT_TIMEOUT_S,
                 on_stored: Callable[[list[Stored], list[Fetched | Unreached]], None]
                 | None = None) -> None:
        self.fleet = fleet
        self.store = SqlTelemetry(fleet.inventory.engine)
        self.models = SqlDeviceModels(fleet.inventory.engine)
        self.timeout_s = timeout_s
        self.on_stored = on_stored
        self._jobs: queue.Queue[tuple[Device, Cursors] | None] = queue.Queue()
        self._threads = max(1, concurrency)
        self._done: queue.Queue[Fetched | Unreached] = queue.Queue()
        self._lock = threading.Lock()
        self.in_flight: set[str] = set()
        self._failures: dict[str, int] = {}
        self._retry_at: dict[str, float] = {}
        self._models_at: dict[str, float] = {}  # when each device's models were last read
        self._clients: dict[str, tuple[tuple[str, int, bool], GrpcAgentClient]] = {}
        for i in range(max(1, concurrency)):
            threading.Thread(target=self._work, name=f"collect-{i}", daemon=True).start()

    def _work(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:  # close(): this worker is done
                return
            device, cursors = job
            try:
                due = time.monotonic() - self._models_at.get(device.name, -1e9) >= (
                    MODELS_EVERY_S)
                result = fetch(self.fleet, device, cursors, self.timeout_s,
                               self._client(device), due)
                if isinstance(result, Fetched) and result.models is not None:
                    self._models_at[device.name] = time.monotonic()
            except Exception as exc:  # a bug must not kill the worker; the device shows it
                result = Unreached(device.name, time.time(), 0.0,
                                   f"collector error: {type(exc).__name__}: {exc}")
            if isinstance(result, Unreached):
                self._forget(device.name)  # a fresh connection next time
            self._done.put(result)

    def _client(self, device: Device) -> GrpcAgentClient | None:
        """A connection kept per device across passes (an SSH-tunnelled one is not kept)."""
        if device.proxy_jump:
            return None
        key = (device.host, device.agent_port, device.tls)
        with self._lock:
            kept = self._clients.get(device.name)
        if kept is not None and kept[0] == key:
            return kept[1]
        if kept is not None:
            kept[1].close()
        try:
            client = self.fleet.client(device, timeout_s=self.timeout_s)
        except FleetError:
            return None  # fetch opens its own and reports why it could not
        with self._lock:
            self._clients[device.name] = (key, client)
        return client

    def _forget(self, name: str) -> None:
        with self._lock:
            kept = self._clients.pop(name, None)
        if kept is not None:
            kept[1].close()

    def close(self) -> None:
        """Stop the pool's threads once their current contact ends, and close the kept
        connections."""
        for _ in range(self._threads):
            self._jobs.put(None)
        with self._lock:
            kept, self._clients = list(self._clients.values()), {}
        for _key, client in kept:
            client.close()

    def submit(self, devices: list[Device], respect_backoff: bool = True) -> list[str]:
        """Start a contact with each device not already being contacted (nor backing off);
        returns the names started."""
        now = time.monotonic()
        with self._lock:
            chosen = [d for d in devices if d.name not in self.in_flight
                      and (not respect_backoff or self._retry_at.get(d.name, 0.0) <= now)]
            self.in_flight.update(d.name for d in chosen)
        if not chosen:
            return []
        cursors = self.store.cursors([d.name for d in chosen])
        for d in chosen:
            self._jobs.put((d, cursors.get(d.name, Cursors())))
        return [d.name for d in chosen]

    def drain(self, wait_s: float, report: PassReport | None = None) -> int:
        """Write what finished, waiting up to ``wait_s`` for the first result; returns how
        many contacts were written."""
        results: list[Fetched | Unreached] = []
        try:
            results.append(self._done.get(timeout=wait_s) if wait_s > 0
                           else self._done.get_nowait())
            while len(results) < BATCH:
                results.append(self._done.get_nowait())
        except queue.Empty:
            pass
        if not results:
            return 0
        stored = self.store.store(results)
        self.models.store((r.device, list(r.models)) for r in results
                          if isinstance(r, Fetched) and r.models is not None)
        with self._lock:
            now = time.monotonic()
            for r in results:
                self.in_flight.discard(r.device)
                if isinstance(r, Unreached):
                    n = self._failures.get(r.device, 0) + 1
                    self._failures[r.device] = n
                    self._retry_at[r.device] = now + min(BACKOFF_MAX_S, 2.0 ** (n - 1))
                else:
                    self._failures.pop(r.device, None)
                    self._retry_at.pop(r.device, None)
        if report is not None:
            _account(report, results, stored)
        if self.on_stored is not None:
            self.on_stored(stored, results)
        return len(results)

    def run_pass(self, devices: list[Device], wait_s: float | None = None) -> PassReport:
        """Contact every device once and write the results; with ``wait_s``, return after at
        most that long (contacts still running are written by a later ``drain``)."""
        started = time.monotonic()
        report = PassReport(devices=len(devices))
        names = set(self.submit(devices, respect_backoff=False))
        limit = None if wait_s is None else started + wait_s
        pending = set(names)
        while pending:
            budget = 0.5 if limit is None else min(0.5, limit - time.monotonic())
            if budget <= 0:
                break
            before = set(report.reached) | set(report.unreachable)
            self.drain(budget, report)
            pending -= (set(report.reached) | set(report.unreachable)) - before
        report.seconds = time.monotonic() - started
        return report


def _account(report: PassReport, results: list[Fetched | Unreached],
             stored: list[Stored]) -> None:
    for r in results:
        if isinstance(r, Unreached):
            report.unreachable[r.device] = r.error
        else:
            report.reached.append(r.device)
            if not r.complete:
                report.incomplete.append(r.device)
    for s in stored:
        report.requests += len(s.requests)
        report.samples += len(s.samples)
        report.gaps += [(s.device, kind) for kind in s.gaps]


def collect_once(fleet: Fleet, devices: list[Device], concurrency: int = 32,
                 timeout_s: float = DEFAULT_TIMEOUT_S) -> PassReport:
    """`fleet collect`: one pass over ``devices``, waiting for every contact (each bounded)."""
    collector = Collector(fleet, min(concurrency, max(1, len(devices))), timeout_s)
    try:
        return collector.run_pass(devices)
    finally:
        collector.close()
