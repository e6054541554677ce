"""SqlRolloutLog: rollouts, their devices' steps, events and device leases in the database.

The one writer of rollout state (controller.services.ports.RolloutLog). Every call is its
own transaction and commits before it returns, so what a killed controller leaves behind is
exactly what had happened. Leases are rows keyed by device: taking a device another rollout
holds fails on the primary key, on SQLite and on PostgreSQL with several controllers alike.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from sqlalchemy import delete, func, update
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from controller.adapters import device_models_db
from controller.adapters.inventory import SqlInventory
from controller.adapters.tables import (
    Device,
    DeviceLease,
    ModelArtifact,
    RolloutDevice,
    RolloutEvent,
    RolloutRow,
)
from controller.core.device_models import DeviceModel, committed, rolled_back, with_adapter
from controller.core.steps import FINAL, Step
from controller.errors import UsageError
from controller.liveness import driver_alive
from controller.services.ports import (
    Artifact,
    DeviceJob,
    DevicesBusy,
    ModelView,
    Rollout,
    RolloutBusy,
)

DONE = ("completed", "halted", "aborted", "superseded")


def utc(value: datetime | None) -> datetime | None:
    """SQLite hands timestamps back naive; they were written in UTC."""
    if value is None or value.tzinfo is not None:
        return value
    return value.replace(tzinfo=timezone.utc)


def _now() -> datetime:
    return datetime.now(timezone.utc)


@dataclass(frozen=True)
class EventView:
    device: str
    step: str
    reason: str
    bytes_sent: int
    at: datetime


class SqlRolloutLog:
    def __init__(self, inventory: SqlInventory) -> None:
        self.inventory = inventory

    def _session(self) -> Session:
        return self.inventory.session()

    # -- writing --------------------------------------------------------------------------
    def create(self, rollout: Rollout, jobs: list[DeviceJob]) -> None:
        leased = [j.device for j in jobs if j.step not in FINAL]
        with self._session() as s:
            # leases of rollouts that ended are stale (their release never ran)
            ended = select(RolloutRow.id).where(col(RolloutRow.status).in_(DONE))
            s.exec(delete(DeviceLease).where(col(DeviceLease.rollout).in_(ended)))
            self._supersede_stale(s, rollout.id, leased)
            s.add(_row(rollout))
            s.flush()  # the rollout row first: its devices' rows refer to it
            for job in jobs:
                s.add(_device_row(rollout.id, job))
                s.add(RolloutEvent(rollout=rollout.id, device=job.device, step=job.step.value,
                                   reason=job.reason))
            for device in leased:
                s.add(DeviceLease(device=device, rollout=rollout.id))
            try:
                s.commit()
            except IntegrityError as exc:
                s.rollback()
                error = exc
            else:
                return
        holders = self.holders(leased)
        if not holders:  # not a lease conflict after all
            raise error
        raise DevicesBusy(holders)

    def _supersede_stale(self, s: Session, new: str, devices: list[str]) -> None:
        """A device held by a rollout nobody drives (left ``pending``, or whose controller
        died or was interrupted) is taken over by the new rollout: the latest intent for it
        wins over a stale one, and the new rollout first asks the device where it stands. A
        rollout driven live, or waiting for approval, keeps its devices."""
        rows = s.exec(select(DeviceLease, RolloutRow).join(
            RolloutRow, col(RolloutRow.id) == col(DeviceLease.rollout)).where(
            col(DeviceLease.device).in_(devices),
            col(RolloutRow.status).in_(["pending", "running"])))
        for lease, holder in rows:
            if holder.status == "running" and driver_alive(holder.controller,
                                                           utc(holder.heartbeat_at)):
                continue
            job = s.get(RolloutDevice, (holder.id, lease.device))
            if job is not None and job.step not in {f.value for f in FINAL}:
                job.step, job.reason = Step.HALTED.value, f"superseded by rollout {new}"
                job.finished_at = _now()
                s.add(job)
                s.add(RolloutEvent(rollout=holder.id, device=lease.device, step=job.step,
                                   reason=job.reason))
                s.delete(lease)
                s.flush()
                left = s.exec(select(func.count()).select_from(RolloutDevice).where(
                    RolloutDevice.rollout == holder.id,
                    col(RolloutDevice.step).notin_([f.value for f in FINAL]))).one()
                if not left:
                    holder.status, holder.finished_at = "superseded", _now()
                    holder.reason = f"its unfinished devices were taken over by rollout {new}"
                    s.add(holder)
        s.flush()

    def holders(self, devices: list[str]) -> dict[str, str]:
        with self._session() as s:
            rows = s.exec(select(DeviceLease).where(col(DeviceLease.device).in_(devices)))
            return {r.device: r.rollout for r in rows}

    def record(self, rollout: str, job: DeviceJob, restored: ModelView | None = None) -> None:
        now = _now()
        with self._session() as s:
            row = s.get(RolloutDevice, (rollout, job.device))
            if row is None:
                row = _device_row(rollout, job)
            row.step, row.reason, row.hint = job.step.value, job.reason, job.hint
            row.bytes_sent, row.model_failed = job.bytes_sent, job.model_failed
            row.upload_attempts, row.updated_at = job.upload_attempts, now
            row.site, row.bytes_from_peers = job.site, job.bytes_from_peers
            row.peer_bytes_json = json.dumps(job.peer_bytes, sort_keys=True)
            if job.step is not Step.UPLOADING:
                row.progress_bytes = 0
            if row.started_at is None and job.step is not Step.PLANNED:
                row.started_at = now
            row.finished_at = now if job.step in FINAL else None
            s.add(row)
            s.add(RolloutEvent(rollout=rollout, device=job.device, step=job.step.value,
                               reason=job.reason, bytes_sent=job.bytes_sent, at=now))
            s.exec(update(RolloutRow).where(col(RolloutRow.id) == rollout)
                   .values(updated_at=now))
            device = s.get(Device, job.device)
            if device is not None and job.step in (Step.COMMITTED, Step.ROLLED_BACK):
                self._device_state(s, device, job, restored, rollout)
            elif device is not None and job.step is Step.UNCHANGED and job.artifact:
                self._already_there(s, device, job.artifact)
            s.commit()

    def _device_state(self, s: Session, device: Device, job: DeviceJob,
                      restored: ModelView | None, rollout: str) -> None:
        art = job.artifact
        if job.step is Step.COMMITTED and art is not None:
            _runs(device, art)
        elif art is None or not art.base_sha256:
            # a model given up (an adapter given up leaves the device as it was: its base
            # stays, and the adapter it had serves again)
            model = restored
            if model is not None and not model.variant and model.sha256:
                known = s.exec(select(ModelArtifact).where(
                    ModelArtifact.sha256 == model.sha256)).first()
                if known is not None:
                    model = ModelView(known.model, known.variant, model.sha256)
            device.state = "rolled-back"
            device.model = model.name if model else ""
            device.variant = model.variant if model else ""
            device.sha256 = model.sha256 if model else ""
        device.last_seen = _now()
        s.add(device)
        self._device_models(s, job, restored, rollout)

    @staticmethod
    def _already_there(s: Session, device: Device, art: Artifact) -> None:
        """The device already runs what the rollout asked (its agent said so): the fleet
        deployed it, whatever the row said (a device enrolled again, a database restored)."""
        if art.base_sha256 or device.sha256 != art.sha256:
            _runs(device, art)
        device.last_seen = _now()
        s.add(device)

    def _device_models(self, s: Session, job: DeviceJob, restored: ModelView | None,
                       rollout: str) -> None:
        """The device's set of models (controller.core.device_models) as this step left it;
        the collector corrects it from the agent's own word at its next contact."""
        art = job.artifact
        if art is None or (art.base_sha256 and job.step is not Step.COMMITTED):
            return  # an adapter rolled back: the adapter its base had serves again
        conn = s.connection()
        models = device_models_db.read(conn, [job.device]).get(job.device, [])
        if art.base_sha256:  # an adapter, on the model whose file is its base
            models = with_adapter(models, art.base_sha256, art.adapter)
        elif job.step is Step.COMMITTED:
            row = s.get(RolloutRow, rollout)
            policy = json.loads(row.policy_json) if row is not None else {}
            new = DeviceModel(art.model, art.variant, art.sha256,
                              tuple(sorted(policy.get("aliases") or ())),
                              bool(policy.get("pinned")), True, False, job.memory_bytes)
            models = committed(models, new, bool(policy.get("replace")))
        else:
            back = (DeviceModel(restored.name or art.model, restored.variant, restored.sha256,
                                resident=True)
                    if restored is not None and restored.sha256 else None)
            models = rolled_back(models, art.model, back)
        device_models_db.write(conn, [(job.device, models)])

    def progress(self, rollout: str, device: str, done: int) -> None:
        """How far the upload under way has got (what the rollout view shows live)."""
        with self._session() as s:
            s.exec(update(RolloutDevice).where(
                col(RolloutDevice.rollout) == rollout, col(RolloutDevice.device) == device)
                .values(progress_bytes=done, updated_at=_now()))
            s.commit()

    def update(self, rollout: Rollout) -> None:
        with self._session() as s:
            row = s.get(RolloutRow, rollout.id)
            assert row is not None
            row.status, row.wave, row.approved_wave = (rollout.status, rollout.wave,
                                                       rollout.approved_wave)
            row.next_wave_at, row.reason = rollout.next_wave_at, rollout.reason
            row.abort_requested = rollout.abort_requested
            row.finished_at = rollout.finished_at
            row.updated_at = _now()
            s.add(row)
            s.commit()

    def request_abort(self, rollout: str) -> None:
        with self._session() as s:
            s.exec(update(RolloutRow).where(col(RolloutRow.id) == rollout)
                   .values(abort_requested=True, updated_at=_now()))
            s.commit()

    def abort_requested(self, rollout: str) -> bool:
        with self._session() as s:
            row = s.get(RolloutRow, rollout)
            return bool(row and row.abort_requested)

    def heartbeat(self, rollout: str, controller: str) -> bool:
        with self._session() as s:
            result = s.exec(update(RolloutRow).where(
                col(RolloutRow.id) == rollout, col(RolloutRow.controller) == controller)
                .values(heartbeat_at=_now()))
            s.commit()
            return bool(result.rowcount == 1)

    def claim(self, rollout: str, controller: str, stale_after_s: float) -> Rollout:
        with self._session() as s:
            row = s.get(RolloutRow, rollout)
            if row is None:
                raise UsageError(f"no rollout {rollout!r}", hint="`fleet rollouts` lists them")
            current = _rollout(row)
            if row.status in DONE:
                raise UsageError(f"rollout {rollout} is {row.status}: nothing to do",
                                 hint=f"`fleet rollouts show {rollout}` shows how it ended")
            beat = utc(row.heartbeat_at)
            live = (row.controller != controller and row.status == "running"
                    and beat is not None and _now() - beat < timedelta(seconds=stale_after_s)
                    and driver_alive(row.controller, beat))
            if live:
                raise RolloutBusy(current)
            result = s.exec(update(RolloutRow).where(
                col(RolloutRow.id) == rollout, col(RolloutRow.epoch) == row.epoch)
                .values(controller=controller, heartbeat_at=_now(), epoch=row.epoch + 1,
                        updated_at=_now()))
            s.commit()
            if result.rowcount != 1:  # another controller claimed it between our reads
                raise RolloutBusy(current)
        return self.load(rollout)[0]

    def release(self, rollout: str, devices: list[str]) -> None:
        with self._session() as s:
            s.exec(delete(DeviceLease).where(
                col(DeviceLease.rollout) == rollout, col(DeviceLease.device).in_(devices)))
            s.commit()

    # -- reading --------------------------------------------------------------------------
    def resolve(self, prefix: str) -> str:
        """The full id of the rollout whose id starts with ``prefix``."""
        with self._session() as s:
            ids = list(s.exec(select(RolloutRow.id).where(
                col(RolloutRow.id).startswith(prefix)).limit(2)))
        if not ids:
            raise UsageError(f"no rollout {prefix!r}", hint="`fleet rollouts` lists them")
        if len(ids) > 1:
            raise UsageError(f"{prefix!r} names more than one rollout",
                             hint="give more characters of the id")
        return ids[0]

    def load(self, rollout: str) -> tuple[Rollout, list[DeviceJob]]:
        with self._session() as s:
            row = s.get(RolloutRow, rollout)
            if row is None:
                raise UsageError(f"no rollout {rollout!r}", hint="`fleet rollouts` lists them")
            devices = s.exec(select(RolloutDevice).where(RolloutDevice.rollout == rollout)
                             .order_by(col(RolloutDevice.position)))
            return _rollout(row), [_job(row.model, d) for d in devices]

    def recent(self, limit: int) -> list[tuple[Rollout, dict[str, int]]]:
        """Newest first, with how many devices are at each step."""
        with self._session() as s:
            rows = list(s.exec(select(RolloutRow).order_by(
                col(RolloutRow.created_at).desc()).limit(limit)))
            counts: dict[str, dict[str, int]] = {r.id: {} for r in rows}
            grouped = s.exec(select(RolloutDevice.rollout, RolloutDevice.step,
                                    func.count()).where(col(RolloutDevice.rollout).in_(
                                        list(counts))).group_by(
                                    RolloutDevice.rollout, RolloutDevice.step))
            for rollout_id, step, n in grouped:
                counts[rollout_id][step] = n
        return [(_rollout(r), counts[r.id]) for r in rows]

    def events(self, rollout: str) -> list[EventView]:
        with self._session() as s:
            rows = s.exec(select(RolloutEvent).where(RolloutEvent.rollout == rollout)
                          .order_by(col(RolloutEvent.id)))
            return [EventView(e.device, e.step, e.reason, e.bytes_sent, utc(e.at) or e.at)
                    for e in rows]

    def devices_of(self, device: str) -> list[RolloutDevice]:
        """One device's rows over every rollout, newest first."""
        with self._session() as s:
            return list(s.exec(select(RolloutDevice).where(RolloutDevice.device == device)
                               .order_by(col(RolloutDevice.updated_at).desc())))

    def devices(self, rollout: str) -> list[RolloutDevice]:
        with self._session() as s:
            return list(s.exec(select(RolloutDevice).where(RolloutDevice.rollout == rollout)
                               .order_by(col(RolloutDevice.position))))


def _runs(device: Device, art: Artifact) -> None:
    """The device row once the fleet's ``art`` runs there: an adapter on its base (the base
    stays as it is), or a model (adapters are held per base: a new model has none)."""
    if art.base_sha256:
        device.adapter, device.adapter_sha256 = art.adapter, art.sha256
        return
    if device.sha256 != art.sha256:
        device.adapter, device.adapter_sha256 = "", ""
    device.state, device.model, device.variant, device.sha256 = (
        "deployed", art.model, art.variant, art.sha256)


def _row(r: Rollout) -> RolloutRow:
    return RolloutRow(id=r.id, model=r.model, status=r.status,
                      policy_json=json.dumps(r.policy, sort_keys=True),
                      waves_json=json.dumps(r.waves), wave=r.wave,
                      approved_wave=r.approved_wave, next_wave_at=r.next_wave_at,
                      controller=r.controller, heartbeat_at=r.heartbeat_at or _now(),
                      reason=r.reason, created_at=r.created_at or _now())


def _rollout(row: RolloutRow) -> Rollout:
    return Rollout(id=row.id, model=row.model, status=row.status,
                   policy=json.loads(row.policy_json or "{}"),
                   waves=list(json.loads(row.waves_json or "[]")), wave=row.wave,
                   approved_wave=row.approved_wave, next_wave_at=utc(row.next_wave_at),
                   controller=row.controller, heartbeat_at=utc(row.heartbeat_at),
                   created_at=utc(row.created_at), finished_at=utc(row.finished_at),
                   abort_requested=row.abort_requested, reason=row.reason)


def _device_row(rollout: str, job: DeviceJob) -> RolloutDevice:
    art = job.artifact
    return RolloutDevice(
        rollout=rollout, device=job.device, position=job.position, wave=job.wave,
        step=job.step.value, variant=art.variant if art else "",
        format=art.format if art else "", sha256=art.sha256 if art else "",
        size_bytes=art.size_bytes if art else 0, path=art.path if art else "",
        n_ctx=job.n_ctx, memory_bytes=job.memory_bytes, choice=job.choice,
        reason=job.reason, hint=job.hint, bytes_sent=job.bytes_sent,
        model_failed=job.model_failed, upload_attempts=job.upload_attempts,
        predicted_json=json.dumps(job.predicted),
        finished_at=_now() if job.step in FINAL else None, site=job.site,
        bytes_from_peers=job.bytes_from_peers,
        peer_bytes_json=json.dumps(job.peer_bytes, sort_keys=True),
        base_sha256=art.base_sha256 if art else "", held=job.held)


def _job(model: str, d: RolloutDevice) -> DeviceJob:
    art = (Artifact(model, d.variant, d.format, d.sha256, d.size_bytes, d.path,
                    d.base_sha256) if d.sha256 else None)
    return DeviceJob(device=d.device, position=d.position, wave=d.wave, step=Step(d.step),
                     artifact=art, n_ctx=d.n_ctx, memory_bytes=d.memory_bytes,
                     choice=d.choice, reason=d.reason, hint=d.hint, bytes_sent=d.bytes_sent,
                     model_failed=d.model_failed, upload_attempts=d.upload_attempts,
                     predicted=json.loads(d.predicted_json or "{}"), site=d.site,
                     bytes_from_peers=d.bytes_from_peers,
                     peer_bytes={str(k): int(v) for k, v in
                                 json.loads(d.peer_bytes_json or "{}").items()},
                     held=d.held)
