"""Per-request telemetry, buffered on disk and read by cursor.

Records are appended to ``requests.jsonl`` with a monotonically increasing ``seq``; a reader asks
for records after the last ``seq`` it saw, so nothing is lost or duplicated while the controller
is away. The buffer is bounded: past ``max_records`` the oldest half is dropped on the next write.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path


@dataclass(frozen=True)
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


class TelemetryBuffer:
    def __init__(self, path: Path, max_records: int = 10_000) -> None:
        self.path = path
        self.max_records = max_records
        self._lock = threading.Lock()
        self._records: list[RequestRecord] = self._load()
        self._next_seq = self._records[-1].seq + 1 if self._records else 1
        self.worker_crashes = 0

    def _load(self) -> list[RequestRecord]:
        records = []
        try:
            lines = self.path.read_text().splitlines()
        except FileNotFoundError:
            return []
        for line in lines:
            try:
                records.append(RequestRecord(**json.loads(line)))
            except (ValueError, TypeError):
                continue  # a torn last line after a crash
        return records[-self.max_records :]

    def append(self, **fields: object) -> RequestRecord:
        with self._lock:
            record = RequestRecord(seq=self._next_seq, timestamp=time.time(), **fields)  # type: ignore[arg-type]
            self._next_seq += 1
            self._records.append(record)
            if len(self._records) > self.max_records:
                self._records = self._records[len(self._records) // 2 :]
                self._rewrite()
            else:
                with self.path.open("a") as fh:
                    fh.write(json.dumps(asdict(record)) + "\n")
            return record

    def _rewrite(self) -> None:
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text("".join(json.dumps(asdict(r)) + "\n" for r in self._records))
        tmp.replace(self.path)

    def after(self, seq: int, limit: int) -> list[RequestRecord]:
        with self._lock:
            return [r for r in self._records if r.seq > seq][:limit]

    def tail(self, limit: int) -> list[RequestRecord]:
        with self._lock:
            return self._records[-limit:] if limit > 0 else []

    @property
    def total(self) -> int:
        """Requests recorded since the buffer began (the last sequence number)."""
        return self._next_seq - 1

    def last(self) -> RequestRecord | None:
        with self._lock:
            return self._records[-1] if self._records else None


class DeviceSampler:
    """CPU % since the previous sample, RAM, thermal zones: read from a root path."""

    def __init__(self, root: Path = Path("/")) -> None:
        self.root = root
        self._lock = threading.Lock()
        self._cpu = self._stat()

    def _stat(self) -> tuple[int, int]:
        from agent.energy import parse_proc_stat

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

    def temperatures(self) -> dict[str, float]:
        temps = {}
        for zone in sorted((self.root / "sys/class/thermal").glob("thermal_zone*")):
            try:
                kind = (zone / "type").read_text().strip() or zone.name
                temps[kind] = int((zone / "temp").read_text().strip()) / 1000.0
            except (OSError, ValueError):
                continue
        return temps
