"""SqlTelemetry: the collector's writes. One transaction per batch of contacts: request rows,
samples, rollups, gaps and the cursors move together, so a collector killed at any point
leaves either all of a contact or none of it, and the next pass reads it again.

Rows are filtered against the stored cursor inside the transaction, after the cursor rows are
locked (the first statement writes, which takes SQLite's write lock; PostgreSQL rows are read
FOR UPDATE), so two collectors racing on a device store each record once and add it to the
rollups once. The primary key (device, epoch_no, seq) backs that up.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from controller.adapters.tables import (
    CollectorBeat,
    Device,
    DeviceLive,
    RequestRollup,
    RequestRow,
    SampleRollup,
    SampleRow,
    TelemetryGap,
    TelemetryModel,
)
from controller.core import rollups
from controller.core.telemetry import (
    ROLLUP_PERIODS,
    Cursor,
    bucket,
    follow,
    sample_gaps,
)
from controller.core.telemetry_records import (
    Cursors,
    Fetched,
    ModelSeen,
    RequestIn,
    SampleIn,
    Stored,
    Unreached,
)

LIVE = DeviceLive.__table__  # type: ignore[attr-defined]
REQ = RequestRow.__table__  # type: ignore[attr-defined]
SAMPLE = SampleRow.__table__  # type: ignore[attr-defined]
REQ_ROLL = RequestRollup.__table__  # type: ignore[attr-defined]
SAMPLE_ROLL = SampleRollup.__table__  # type: ignore[attr-defined]
GAP = TelemetryGap.__table__  # type: ignore[attr-defined]
MODEL = TelemetryModel.__table__  # type: ignore[attr-defined]
BEAT = CollectorBeat.__table__  # type: ignore[attr-defined]
DEVICE = Device.__table__  # type: ignore[attr-defined]
CHUNK = 400  # keys per IN (...) query


def insert_ignoring_conflicts(conn: Connection, table: sa.Table, rows: list[dict[str, Any]]
                              ) -> None:
    if not rows:
        return
    if conn.dialect.name == "sqlite":
        from sqlalchemy.dialects.sqlite import insert as sqlite_insert

        conn.execute(sqlite_insert(table).on_conflict_do_nothing(), rows)
    elif conn.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        conn.execute(pg_insert(table).on_conflict_do_nothing(), rows)
    else:  # rows were filtered against the locked cursors already
        conn.execute(table.insert(), rows)


def _chunks(items: Sequence[Any]) -> Iterable[Sequence[Any]]:
    for i in range(0, len(items), CHUNK):
        yield items[i : i + CHUNK]


class SqlTelemetry:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._model_ids: dict[str, int] = {}
        self._named: set[str] = set()

    # -- reads the collector needs ----------------------------------------------------------
    def cursors(self, devices: list[str]) -> dict[str, Cursors]:
        out: dict[str, Cursors] = {}
        with self.engine.connect() as conn:
            for part in _chunks(devices):
                for r in conn.execute(sa.select(
                        LIVE.c.device, LIVE.c.epoch, LIVE.c.last_seq, LIVE.c.sample_epoch,
                        LIVE.c.last_sample_seq, LIVE.c.active_sha256, LIVE.c.active_model,
                        LIVE.c.active_variant, LIVE.c.previous_model, LIVE.c.previous_variant,
                        LIVE.c.reachable).where(LIVE.c.device.in_(part))):
                    active = (ModelSeen(r.active_sha256, r.active_model, r.active_variant)
                              if r.active_sha256 and r.reachable else None)
                    previous = (ModelSeen("", r.previous_model, r.previous_variant)
                                if r.previous_model else None)
                    out[r.device] = Cursors(r.epoch, r.last_seq, r.sample_epoch,
                                            r.last_sample_seq, active, previous)
        return out

    # -- the batch write --------------------------------------------------------------------
    def store(self, results: Sequence[Fetched | Unreached]) -> list[Stored]:
        """Write a batch of contacts in one transaction; statements are executed once per
        batch with many parameter sets, not once per device."""
        if not results:
            return []
        names = sorted({r.device for r in results})
        with self.engine.begin() as conn:
            insert_ignoring_conflicts(conn, LIVE, [{"device": n, **_LIVE_DEFAULTS}
                                                   for n in names])
            live = self._locked_live(conn, names)
            batch = _Batch()
            fetched = [r for r in results if isinstance(r, Fetched)]
            seen = {m.sha256: m for r in fetched for m in (r.live.active, r.live.previous)
                    if m is not None and m.sha256}
            ids = self.model_ids(conn, seen, [x.sha256 for r in fetched for x in r.requests]
                                 + [x.active_sha256 for r in fetched for x in r.samples
                                    if x.active_sha256])
            stored = []
            for result in results:
                row = live[result.device]
                if isinstance(result, Unreached):
                    stored.append(self._unreached(batch, row, result))
                else:
                    stored.append(self._fetched(batch, row, result, ids))
            batch.execute(conn)
            self._rollups(conn, stored)
        return stored

    def _locked_live(self, conn: Connection, names: list[str]) -> dict[str, Any]:
        rows: dict[str, Any] = {}
        for part in _chunks(names):
            query = sa.select(LIVE).where(LIVE.c.device.in_(part))
            if conn.dialect.name == "postgresql":
                query = query.with_for_update()
            rows.update((r.device, r) for r in conn.execute(query))
        return rows

    def _unreached(self, batch: _Batch, row: Any, result: Unreached) -> Stored:
        out = Stored(result.device, state="unreachable")
        since = row.unreachable_since_ts
        if since is None:
            since = row.last_ok_ts if row.last_ok_ts is not None else result.ts
            batch.gaps.append({"device": result.device, "kind": "unreachable",
                               "start_ts": since, "end_ts": None, "lost": 0,
                               "detail": result.error[:300]})
            out.gaps.append("unreachable")
        batch.unreached.append({"b_device": result.device, "reachable": False,
                                "last_attempt_ts": result.ts, "last_error": result.error[:500],
                                "state": "unreachable", "pass_seconds": result.seconds,
                                "unreachable_since_ts": since})
        batch.device_state.append({"b_name": result.device, "state": "unreachable"})
        return out

    def _fetched(self, batch: _Batch, row: Any, got: Fetched, ids: dict[str, int]) -> Stored:
        out = Stored(got.device, state=got.live.state)
        req = follow(Cursor(row.epoch, row.epoch_no, row.last_seq), got.epoch,
                     [r.seq for r in got.requests])
        keep = set(req.seqs)
        out.requests = [r for r in got.requests if r.seq in keep]
        smp = follow(Cursor(row.sample_epoch, row.sample_epoch_no, row.last_sample_seq),
                     got.sample_epoch, [s.seq for s in got.samples])
        keep_s = set(smp.seqs)
        out.samples = [s for s in got.samples if s.seq in keep_s]
        batch.requests += [_request_row(got.device, req.cursor.epoch_no, r, ids)
                           for r in out.requests]
        batch.samples += [_sample_row(got.device, smp.cursor.epoch_no, s, ids)
                          for s in out.samples]
        self._gaps(batch, row, got, req.reset, req.lost, smp.reset, smp.lost, out)
        values = _live_values(got, row)
        values.update(epoch=req.cursor.epoch, epoch_no=req.cursor.epoch_no,
                      last_seq=req.cursor.last_seq, sample_epoch=smp.cursor.epoch,
                      sample_epoch_no=smp.cursor.epoch_no, last_sample_seq=smp.cursor.last_seq,
                      last_sample_ts=out.samples[-1].ts if out.samples else row.last_sample_ts)
        values["b_device"] = got.device
        batch.reached.append(values)
        self._device_row(batch, got, out.requests)
        return out

    def _gaps(self, batch: _Batch, row: Any, got: Fetched, reset: bool, lost: int,
              sample_reset: bool, lost_samples: int, out: Stored) -> None:
        gaps = []
        if row.unreachable_since_ts is not None:
            batch.gap_ends.append({"b_device": got.device, "end_ts": got.ts})
        if reset:
            gaps.append(("reset", got.ts, got.ts, 0, "the agent's request log started over "
                         "(new epoch): its data directory was replaced or lost"))
        if lost:
            first = out.requests[0].ts if out.requests else got.ts
            gaps.append(("records-lost", row.last_ok_ts or first, first, lost,
                         f"the agent dropped {lost} request records before they were read "
                         "(its buffer was full)"))
        if lost_samples:
            first = out.samples[0].ts if out.samples else got.ts
            gaps.append(("samples-lost", row.last_sample_ts or first, first, lost_samples,
                         f"the agent dropped {lost_samples} device samples before they were "
                         "read"))
        previous = None if sample_reset else row.last_sample_ts
        for start, end in sample_gaps(previous, [s.ts for s in out.samples], got.sample_every_s):
            gaps.append(("agent-down", start, end, 0, f"no device samples for "
                         f"{end - start:.0f} s: the agent was not running"))
        for kind, start, end, n, detail in gaps:
            batch.gaps.append({"device": got.device, "kind": kind, "start_ts": start,
                               "end_ts": end, "lost": n, "detail": detail})
            out.gaps.append(kind)

    def _device_row(self, batch: _Batch, got: Fetched, requests: list[RequestIn]) -> None:
        """The inventory's summary columns (`fleet device list`) follow the last contact."""
        seen = datetime.fromtimestamp(got.ts, timezone.utc)
        active = got.live.active.sha256 if got.live.active else None
        ok = [r for r in requests if r.outcome == "ok" and (active is None or r.sha256 == active)]
        if ok:
            last = ok[-1]
            batch.device_numbers.append({"b_name": got.device, "state": got.live.state,
                                         "last_seen": seen, "last_ttft_ms": last.ttft_ms,
                                         "last_latency_ms": last.total_ms,
                                         "last_tokens_per_s": last.decode_tps})
        else:
            batch.device_seen.append({"b_name": got.device, "state": got.live.state,
                                      "last_seen": seen})

    def model_ids(self, conn: Connection, seen: dict[str, ModelSeen], shas: list[str]
                  ) -> dict[str, int]:
        """Ids of the model files named, created on first sight; names filled in when an
        agent reports them."""
        wanted = set(shas) | set(seen)
        missing = [s for s in wanted if s not in self._model_ids]
        for part in _chunks(missing):
            for r in conn.execute(sa.select(MODEL.c.id, MODEL.c.sha256)
                                  .where(MODEL.c.sha256.in_(part))):
                self._model_ids[r.sha256] = r.id
        new = [s for s in missing if s not in self._model_ids]
        if new:
            insert_ignoring_conflicts(conn, MODEL, [
                {"sha256": s, "model": seen[s].name if s in seen else "",
                 "variant": seen[s].variant if s in seen else ""} for s in new])
            for part in _chunks(new):
                for r in conn.execute(sa.select(MODEL.c.id, MODEL.c.sha256)
                                      .where(MODEL.c.sha256.in_(part))):
                    self._model_ids[r.sha256] = r.id
        unnamed = [m for sha, m in seen.items() if m.name and sha not in self._named]
        if unnamed:
            conn.execute(MODEL.update().where(MODEL.c.sha256 == sa.bindparam("b_sha"),
                                              MODEL.c.model == "")
                         .values(model=sa.bindparam("b_model"),
                                 variant=sa.bindparam("b_variant")),
                         [{"b_sha": m.sha256, "b_model": m.name, "b_variant": m.variant}
                          for m in unnamed])
            self._named.update(m.sha256 for m in unnamed)
        return {s: self._model_ids[s] for s in wanted}

    # -- rollups ----------------------------------------------------------------------------
    def _rollups(self, conn: Connection, stored: list[Stored]) -> None:
        ids = self._model_ids
        req: dict[tuple[int, str, int, str, int], dict[str, Any]] = {}
        smp: dict[tuple[int, str, int, str, int], dict[str, Any]] = {}
        for s in stored:
            for r in s.requests:
                for period in ROLLUP_PERIODS:
                    key = (period, s.device, ids.get(r.sha256, 0), r.meter, bucket(r.ts, period))
                    rollups.add_request(req.setdefault(key, rollups.empty_request()), r)
            for x in s.samples:
                for period in ROLLUP_PERIODS:
                    skey = (period, s.device, ids.get(x.active_sha256, 0), x.meter,
                            bucket(x.ts, period))
                    rollups.add_sample(smp.setdefault(skey, rollups.empty_sample()), x)
        self._merge(conn, REQ_ROLL, ("period_s", "device", "model_id", "meter", "bucket"), req,
                    rollups.merge_request)
        self._merge(conn, SAMPLE_ROLL, ("period_s", "device", "model_id", "meter", "bucket"), smp,
                    rollups.merge_sample)

    def _merge(self, conn: Connection, table: sa.Table, key_cols: tuple[str, ...],
               new: dict[Any, dict[str, Any]], merge: Any) -> None:
        if not new:
            return
        existing: dict[Any, Any] = {}
        # a pass touches few buckets: ask by (period, bucket) and device, keep exact keys
        by_slot: dict[tuple[int, int], set[str]] = {}
        for key in new:
            by_slot.setdefault((key[0], key[-1]), set()).add(key[1])
        for (period, start), devices in by_slot.items():
            for part in _chunks(sorted(devices)):
                query = sa.select(table).where(table.c.period_s == period,
                                               table.c.bucket == start,
                                               table.c.device.in_(part))
                for r in conn.execute(query):
                    key = tuple(getattr(r, k) for k in key_cols)
                    if key in new:
                        existing[key] = r
        inserts, updates = [], []
        for key, acc in new.items():
            ident = dict(zip(key_cols, key, strict=True))
            if key in existing:
                updates.append({**{f"k_{k}": v for k, v in ident.items()},
                                **merge(existing[key], acc)})
            else:
                inserts.append({**ident, **merge(None, acc)})
        insert_ignoring_conflicts(conn, table, inserts)
        if updates:
            value_cols = [c for c in updates[0] if not c.startswith("k_")]
            stmt = table.update().where(*[table.c[k] == sa.bindparam(f"k_{k}")
                                          for k in key_cols]).values(
                {c: sa.bindparam(c) for c in value_cols})
            conn.execute(stmt, updates)

    # -- housekeeping -----------------------------------------------------------------------
    def prune(self, now: float, raw_days: float, minute_days: float, hour_days: float
              ) -> dict[str, int]:
        """Delete what is past its retention; returns rows deleted per table."""
        out = {}
        with self.engine.begin() as conn:
            for name, stmt in (
                    ("telemetry_request", REQ.delete().where(REQ.c.ts < now - raw_days * 86400)),
                    ("telemetry_sample", SAMPLE.delete().where(
                        SAMPLE.c.ts < now - raw_days * 86400)),
                    ("minute rollups", REQ_ROLL.delete().where(
                        REQ_ROLL.c.period_s == 60, REQ_ROLL.c.bucket < now - minute_days * 86400)),
                    ("minute sample rollups", SAMPLE_ROLL.delete().where(
                        SAMPLE_ROLL.c.period_s == 60,
                        SAMPLE_ROLL.c.bucket < now - minute_days * 86400)),
                    ("hour rollups", REQ_ROLL.delete().where(
                        REQ_ROLL.c.period_s == 3600, REQ_ROLL.c.bucket < now - hour_days * 86400)),
                    ("hour sample rollups", SAMPLE_ROLL.delete().where(
                        SAMPLE_ROLL.c.period_s == 3600,
                        SAMPLE_ROLL.c.bucket < now - hour_days * 86400)),
                    ("telemetry_gap", GAP.delete().where(
                        GAP.c.end_ts.is_not(None), GAP.c.end_ts < now - minute_days * 86400))):
                out[name] = conn.execute(stmt).rowcount or 0
        return out

    def beat(self, name: str, started: float, now: float, interval_s: float, devices: int,
             last_pass_s: float) -> None:
        with self.engine.begin() as conn:
            values = {"started_ts": started, "beat_ts": now, "interval_s": interval_s,
                      "devices": devices, "last_pass_s": last_pass_s}
            if conn.execute(BEAT.update().where(BEAT.c.name == name).values(**values)
                            ).rowcount == 0:
                conn.execute(BEAT.insert().values(name=name, **values))

    def end_beat(self, name: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(BEAT.delete().where(BEAT.c.name == name))


_LIVE_DEFAULTS: dict[str, Any] = {
    c.name: c.default.arg for c in LIVE.columns
    if c.name != "device" and c.default is not None and not callable(c.default.arg)}


def _request_row(device: str, epoch_no: int, r: RequestIn, ids: dict[str, int]
                 ) -> dict[str, Any]:
    return {"device": device, "epoch_no": epoch_no, "seq": r.seq, "ts": r.ts,
            "model_id": ids.get(r.sha256, 0), "ttft_ms": r.ttft_ms, "total_ms": r.total_ms,
            "prompt_tokens": r.prompt_tokens, "completion_tokens": r.completion_tokens,
            "decode_tps": r.decode_tps, "prefill_tps": r.prefill_tps, "outcome": r.outcome,
            "energy_j": r.energy_j, "meter": r.meter, "peak_rss_bytes": r.peak_rss_bytes,
            "model": r.model, "adapter": r.adapter, "load_wait_ms": r.load_wait_ms}


def _sample_row(device: str, epoch_no: int, s: SampleIn, ids: dict[str, int]
                ) -> dict[str, Any]:
    return {"device": device, "epoch_no": epoch_no, "seq": s.seq, "ts": s.ts,
            "interval_s": s.interval_s, "cpu_percent": s.cpu_percent,
            "ram_used_bytes": s.ram_used_bytes, "power_w": s.power_w, "energy_j": s.energy_j,
            "meter": s.meter, "max_temp_c": max(s.temperatures_c.values(), default=None),
            "temps_json": json.dumps(s.temperatures_c, sort_keys=True),
            "throttled": s.throttled, "throttle_reasons": "; ".join(s.throttle_reasons),
            "cpu_freq_mhz": s.cpu_freq_mhz, "worker_crashes": s.worker_crashes,
            "model_id": ids.get(s.active_sha256, 0) if s.active_sha256 else 0}


def _live_values(got: Fetched, row: Any) -> dict[str, Any]:
    """Every column a contact sets, the same keys every time (one executemany per batch);
    what this contact did not bring keeps the row's value."""
    live = got.live
    values: dict[str, Any] = {
        "reachable": True, "last_ok_ts": got.ts, "last_attempt_ts": got.ts,
        "unreachable_since_ts": None, "last_error": live.drift, "state": live.state,
        "active_sha256": live.active.sha256 if live.active else "",
        "active_model": live.active.name if live.active else "",
        "active_variant": live.active.variant if live.active else "",
        "on_trial": live.on_trial,
        "previous_model": live.previous.name if live.previous else "",
        "previous_variant": live.previous.variant if live.previous else "",
        "worker_crashes": live.worker_crashes, "requests_total": live.requests_total,
        "power_w": live.power_w, "energy_meter": live.energy_meter,
        "cpu_percent": live.cpu_percent, "ram_used_bytes": live.ram_used_bytes,
        "ram_total_bytes": live.ram_total_bytes, "max_temp_c": live.max_temp_c,
        "sample_every_s": got.sample_every_s, "pass_seconds": got.seconds}
    values.update(throttled=row.throttled, throttle_reasons=row.throttle_reasons,
                  last_joules_per_token=row.last_joules_per_token)
    if got.samples:
        last = got.samples[-1]
        values.update(throttled=last.throttled, throttle_reasons="; ".join(last.throttle_reasons))
    active = live.active.sha256 if live.active else None
    ok = [r for r in got.requests if r.outcome == "ok" and r.completion_tokens > 0
          and (active is None or r.sha256 == active)]
    if ok and ok[-1].energy_j > 0:
        values["last_joules_per_token"] = ok[-1].energy_j / ok[-1].completion_tokens
    return values


def _update_many(conn: Connection, table: sa.Table, key: str, rows: list[dict[str, Any]]
                 ) -> None:
    """One UPDATE ... WHERE key = :b_key executed for every row (all rows share their keys)."""
    if not rows:
        return
    columns = [c for c in rows[0] if not c.startswith("b_")]
    stmt = table.update().where(table.c[key] == sa.bindparam(f"b_{key}")).values(
        {c: sa.bindparam(c) for c in columns})
    conn.execute(stmt, rows)


@dataclass
class _Batch:
    """The rows and updates of one batch of contacts, executed together."""

    requests: list[dict[str, Any]] = field(default_factory=list)
    samples: list[dict[str, Any]] = field(default_factory=list)
    reached: list[dict[str, Any]] = field(default_factory=list)
    unreached: list[dict[str, Any]] = field(default_factory=list)
    gaps: list[dict[str, Any]] = field(default_factory=list)
    gap_ends: list[dict[str, Any]] = field(default_factory=list)
    device_numbers: list[dict[str, Any]] = field(default_factory=list)
    device_seen: list[dict[str, Any]] = field(default_factory=list)
    device_state: list[dict[str, Any]] = field(default_factory=list)

    def execute(self, conn: Connection) -> None:
        insert_ignoring_conflicts(conn, REQ, self.requests)
        insert_ignoring_conflicts(conn, SAMPLE, self.samples)
        if self.gap_ends:
            conn.execute(GAP.update().where(GAP.c.device == sa.bindparam("b_device"),
                                            GAP.c.kind == "unreachable",
                                            GAP.c.end_ts.is_(None))
                         .values(end_ts=sa.bindparam("end_ts")), self.gap_ends)
        if self.gaps:
            conn.execute(GAP.insert(), self.gaps)
        _update_many(conn, LIVE, "device", self.reached)
        _update_many(conn, LIVE, "device", self.unreached)
        _update_many(conn, DEVICE, "name", self.device_numbers)
        _update_many(conn, DEVICE, "name", self.device_seen)
        _update_many(conn, DEVICE, "name", self.device_state)
