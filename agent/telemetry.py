"""Telemetry kept on the device until the controller reads it: request records and device
samples, each in its own bounded log on disk, read by cursor.

Each log appends JSON lines with a monotonically increasing ``seq``; a reader asks for entries
after the last ``seq`` it saw, so nothing is lost or read twice while the controller is away,
and an agent restart continues the sequence from the file. Past ``max_records`` the oldest half
is dropped on the next write: a reader whose cursor falls behind ``first_seq - 1`` learns how
many entries it missed. Each log has an ``epoch`` (random, kept beside it): when the file is
lost (a wiped data dir) the sequence restarts at 1 under a new epoch, which tells a reader to
reset its cursor rather than wait for seq to pass its old one.

Device samples (CPU, RAM, temperatures, power and the joules of the interval, throttling) are
taken every ``FLEET_AGENT_SAMPLE_S`` seconds (default 10) by a daemon thread.
"""

from __future__ import annotations

import bisect
import json
import os
import secrets
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Generic, Protocol, TypeVar, cast

from agent.energy import EnergyTracker, parse_proc_stat
from agent.probe import parse_meminfo
from agent.runtimes.base import GenerationStats
from agent.throttling import ThrottleProbe

# Bounds, overridable per device: records are a few hundred bytes on disk and in memory.
MAX_RECORDS = int(os.environ.get("FLEET_AGENT_TELEMETRY_RECORDS", "10000"))
MAX_SAMPLES = int(os.environ.get("FLEET_AGENT_SAMPLES", "8640"))  # a day at 10 s
SAMPLE_S = float(os.environ.get("FLEET_AGENT_SAMPLE_S", "10"))


@dataclass(frozen=True, slots=True)
class RequestRecord:
    seq: int
    timestamp: float
    sha256: str
    variant: str
    ttft_ms: float
    total_ms: float
    prompt_tokens: int
    completion_tokens: int
    decode_tokens_per_s: float
    outcome: str
    energy_j: float = 0.0
    joules_per_token: float = 0.0
    energy_meter: str = ""
    peak_rss_bytes: int = 0
    prefill_tokens_per_s: float = 0.0
    model: str = ""  # the model name that served it (several models per device)
    adapter: str = ""  # the LoRA adapter applied ("": the base alone)
    load_wait_ms: float = 0.0  # waited for an on-demand load first (0: it was resident)


@dataclass(frozen=True, slots=True)
class SampleRecord:
    seq: int
    timestamp: float
    interval_s: float = 0.0
    cpu_percent: float = 0.0
    ram_used_bytes: int = 0
    ram_total_bytes: int = 0
    temperatures_c: dict[str, float] = field(default_factory=dict)
    power_w: float = 0.0  # mean over the interval (energy_j / interval_s)
    energy_j: float = 0.0
    energy_meter: str = ""
    energy_measured: bool = False
    worker_crashes: int = 0
    requests_total: int = 0
    throttled: bool = False
    throttle_reasons: list[str] = field(default_factory=list)
    cpu_freq_mhz: float = 0.0
    cpu_max_freq_mhz: float = 0.0
    active_sha256: str = ""


class _Sequenced(Protocol):
    @property
    def seq(self) -> int: ...


R = TypeVar("R", bound=_Sequenced)
_INTERNED = ("sha256", "variant", "outcome", "energy_meter", "active_sha256", "model",
             "adapter")


class SeqLog(Generic[R]):
    """A bounded JSON-lines log of ``kind`` entries with sequence numbers and an epoch."""

    def __init__(self, path: Path, kind: type[R], max_records: int) -> None:
        self.path = path
        self.kind: Callable[..., R] = kind
        self.max_records = max(2, max_records)
        self._names = {f.name for f in fields(cast(Any, kind))}
        self._lock = threading.Lock()
        self._records: list[R] = self._load()
        self._next_seq = self._records[-1].seq + 1 if self._records else 1
        self.epoch = self._epoch()

    def _epoch(self) -> str:
        epoch_file = self.path.with_suffix(".epoch")
        if self._records:
            try:
                kept = epoch_file.read_text().strip()
            except OSError:
                kept = ""
            if kept:
                return kept
        epoch = secrets.token_hex(8)  # a new log: whatever a reader saw before is gone
        tmp = epoch_file.with_suffix(".epoch.tmp")
        tmp.write_text(epoch + "\n")
        tmp.replace(epoch_file)
        return epoch

    def _decode(self, line: str) -> R:
        data = json.loads(line)
        kept = {k: (sys.intern(v) if k in _INTERNED and isinstance(v, str) else v)
                for k, v in data.items() if k in self._names}  # older/newer fields ignored
        return self.kind(**kept)

    def _load(self) -> list[R]:
        records = []
        try:
            lines = self.path.read_text().splitlines()
        except FileNotFoundError:
            return []
        for line in lines:
            try:
                records.append(self._decode(line))
            except (ValueError, TypeError):
                continue  # a torn last line after a crash
        return records[-self.max_records :]

    def append(self, **values: Any) -> R:
        with self._lock:
            for key in _INTERNED:
                if isinstance(values.get(key), str):
                    values[key] = sys.intern(values[key])
            values.setdefault("timestamp", time.time())
            record = self.kind(seq=self._next_seq, **values)
            self._next_seq += 1
            self._records.append(record)
            if len(self._records) > self.max_records:
                self._records = self._records[len(self._records) // 2 :]
                self._rewrite()
            else:
                with self.path.open("a") as fh:
                    fh.write(json.dumps(asdict(cast(Any, record))) + "\n")
            return record

    def _rewrite(self) -> None:
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text("".join(json.dumps(asdict(cast(Any, r))) + "\n" for r in self._records))
        tmp.replace(self.path)

    def after(self, seq: int, limit: int) -> list[R]:
        with self._lock:
            start = bisect.bisect_right(self._records, seq, key=lambda r: r.seq)
            return self._records[start : start + max(0, limit)]

    def tail(self, limit: int) -> list[R]:
        with self._lock:
            return self._records[-limit:] if limit > 0 else []

    @property
    def first_seq(self) -> int:
        """The oldest entry still held (0 when none is)."""
        with self._lock:
            return self._records[0].seq if self._records else 0

    @property
    def total(self) -> int:
        """Entries recorded since the log began (the last sequence number)."""
        return self._next_seq - 1

    def last(self) -> R | None:
        with self._lock:
            return self._records[-1] if self._records else None


class TelemetryBuffer(SeqLog[RequestRecord]):
    """Request records (``requests.jsonl``) and the worker crash count."""

    def __init__(self, path: Path, max_records: int = MAX_RECORDS) -> None:
        super().__init__(path, RequestRecord, max_records)
        self.worker_crashes = 0

    def append_generation(self, sha256: str, variant: str, s: GenerationStats, outcome: str,
                          energy_meter: str, peak_rss_bytes: int, model: str = "",
                          adapter: str = "", load_wait_ms: float = 0.0) -> RequestRecord:
        """One request's record from its generation stats (whichever API it came by)."""
        return self.append(
            sha256=sha256, variant=variant, ttft_ms=s.ttft_s * 1000, total_ms=s.total_s * 1000,
            prompt_tokens=s.prompt_tokens, completion_tokens=s.completion_tokens,
            decode_tokens_per_s=s.decode_tokens_per_s, outcome=outcome, energy_j=s.energy_j,
            joules_per_token=s.joules_per_token, energy_meter=energy_meter,
            peak_rss_bytes=peak_rss_bytes, prefill_tokens_per_s=s.prefill_tokens_per_s,
            model=model, adapter=adapter, load_wait_ms=load_wait_ms)


class DeviceSampler:
    """CPU % since the previous sample, RAM, thermal zones: read from a root path."""

    def __init__(self, root: Path = Path("/")) -> None:
        self.root = root
        self._lock = threading.Lock()
        self._cpu = self._stat()

    def _stat(self) -> tuple[int, int]:
        try:
            return parse_proc_stat((self.root / "proc/stat").read_text())
        except OSError:
            return 0, 0

    def cpu_percent(self) -> float:
        with self._lock:
            busy, total = self._stat()
            d_busy, d_total = busy - self._cpu[0], total - self._cpu[1]
            self._cpu = (busy, total)
        return 100.0 * d_busy / d_total if d_total > 0 else 0.0

    def memory(self) -> tuple[int, int]:
        """(used, total) bytes."""
        try:
            mem = parse_meminfo((self.root / "proc/meminfo").read_text())
        except OSError:
            return 0, 0
        return mem.get("MemTotal", 0) - mem.get("MemAvailable", 0), mem.get("MemTotal", 0)

    def temperatures(self) -> dict[str, float]:
        temps = {}
        for zone in sorted((self.root / "sys/class/thermal").glob("thermal_zone*")):
            try:
                kind = (zone / "type").read_text().strip() or zone.name
                temps[kind] = int((zone / "temp").read_text().strip()) / 1000.0
            except (OSError, ValueError):
                continue
        return temps


@dataclass(frozen=True)
class AgentCounters:
    worker_crashes: int
    requests_total: int
    active_sha256: str


class DeviceMonitor:
    """Takes a device sample every ``every_s`` seconds into ``samples.jsonl`` (its own
    sequence), so samples taken while the controller is away are read later, not lost."""

    def __init__(self, data_dir: Path, energy: EnergyTracker,
                 counters: Callable[[], AgentCounters], root: Path = Path("/"),
                 every_s: float = SAMPLE_S, max_samples: int = MAX_SAMPLES) -> None:
        self.log: SeqLog[SampleRecord] = SeqLog(data_dir / "samples.jsonl", SampleRecord,
                                                max_samples)
        self.energy = energy
        self.counters = counters
        self.every_s = every_s
        self.sampler = DeviceSampler(root)
        self.throttle = ThrottleProbe(root)
        self._last_j = energy.joules()
        self._last_t = time.monotonic()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def take(self) -> SampleRecord:
        now = time.monotonic()
        joules = self.energy.joules()
        interval = max(0.0, now - self._last_t)
        energy_j = max(0.0, joules - self._last_j)
        self._last_j, self._last_t = joules, now
        used, total = self.sampler.memory()
        throttling = self.throttle.read()
        counters = self.counters()
        return self.log.append(
            interval_s=round(interval, 3), cpu_percent=round(self.sampler.cpu_percent(), 2),
            ram_used_bytes=used, ram_total_bytes=total,
            temperatures_c=self.sampler.temperatures(),
            power_w=round(energy_j / interval, 4) if interval > 0 else 0.0,
            energy_j=round(energy_j, 4), energy_meter=self.energy.meter,
            energy_measured=self.energy.measured, worker_crashes=counters.worker_crashes,
            requests_total=counters.requests_total, throttled=throttling.throttled,
            throttle_reasons=throttling.reasons, cpu_freq_mhz=throttling.cpu_freq_mhz,
            cpu_max_freq_mhz=throttling.cpu_max_freq_mhz,
            active_sha256=counters.active_sha256)

    def start(self) -> None:
        if self.every_s <= 0 or self._thread is not None:
            return
        self._thread = threading.Thread(target=self._run, name="device-samples", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.every_s):
            try:
                self.take()
            except OSError:  # a full disk must not kill the sampler; the next one retries
                continue

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2)
