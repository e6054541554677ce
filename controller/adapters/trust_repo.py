"""SqlTrust: the controller's trust records in its database: each device's manifest counter,
the certificates the fleet CA issued and revoked, and which revocation list each device holds.

Every call is its own transaction. The counter is advanced with one ``UPDATE ... SET seq =
seq + 1`` (a row lock on PostgreSQL, the database lock on SQLite), so two controllers issuing
load orders to one device at once never hand out the same version.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone

from sqlalchemy import update
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from controller.adapters.rollout_repo import utc
from controller.adapters.tables import IssuedCert, ManifestCounter, TrustDelivery


def _now() -> datetime:
    return datetime.now(timezone.utc)


@dataclass(frozen=True)
class CertRecord:
    serial: int
    subject: str
    role: str
    not_after: datetime
    issued_at: datetime
    current: bool
    revoked_at: datetime | None
    revoke_reason: str


def _record(row: IssuedCert) -> CertRecord:
    return CertRecord(int(row.serial, 16), row.subject, row.role,
                      utc(row.not_after) or row.not_after, utc(row.issued_at) or row.issued_at,
                      row.current, utc(row.revoked_at), row.revoke_reason)


class SqlTrust:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def _session(self) -> Session:
        return Session(self.engine, expire_on_commit=False)

    # -- manifest versions -------------------------------------------------------------------
    def next_seq(self, device: str) -> int:
        """The next manifest version for ``device`` (1, 2, ...), never handed out twice."""
        for _ in range(3):
            with self._session() as s:
                moved = s.exec(update(ManifestCounter)
                               .where(col(ManifestCounter.device) == device)
                               .values(seq=ManifestCounter.seq + 1, updated_at=_now()))
                if moved.rowcount:
                    row = s.get(ManifestCounter, device)
                    s.commit()
                    assert row is not None
                    return int(row.seq)
                s.add(ManifestCounter(device=device, seq=1))
                try:
                    s.commit()
                    return 1
                except IntegrityError:  # another controller made the row first
                    s.rollback()
        raise RuntimeError(f"could not advance the manifest counter of {device}")

    def seq(self, device: str) -> int:
        with self._session() as s:
            row = s.get(ManifestCounter, device)
            return int(row.seq) if row else 0

    def raise_seq(self, device: str, at_least: int) -> tuple[int, int]:
        """Move ``device``'s counter up to ``at_least`` (never down); (before, after)."""
        with self._session() as s:
            row = s.get(ManifestCounter, device)
            before = int(row.seq) if row else 0
            if before >= at_least:
                return before, before
            if row is None:
                row = ManifestCounter(device=device, seq=at_least)
            row.seq, row.updated_at = at_least, _now()
            s.add(row)
            s.commit()
            return before, at_least

    # -- certificates -------------------------------------------------------------------------
    def record_cert(self, serial: int, subject: str, role: str, not_after: datetime,
                    current: bool = True) -> None:
        """Record an issued certificate; when ``current``, the subject's earlier ones are no
        longer current (they stay valid until revoked)."""
        with self._session() as s:
            if current:
                for old in s.exec(select(IssuedCert).where(
                        col(IssuedCert.subject) == subject, col(IssuedCert.current))).all():
                    old.current = False
                    s.add(old)
            s.add(IssuedCert(serial=f"{serial:x}", subject=subject, role=role,
                             not_after=not_after, current=current))
            s.commit()

    def certs(self, subject: str | None = None) -> list[CertRecord]:
        with self._session() as s:
            query = select(IssuedCert).order_by(col(IssuedCert.subject),
                                                col(IssuedCert.issued_at))
            if subject is not None:
                query = query.where(col(IssuedCert.subject) == subject)
            return [_record(r) for r in s.exec(query).all()]

    def revoke(self, subject: str, reason: str, serials: list[int] | None = None,
               keep_current: bool = False) -> list[int]:
        """Revoke ``subject``'s certificates (those of ``serials`` only, when given; the
        current one is kept when ``keep_current``); returns the serials newly revoked."""
        revoked = []
        with self._session() as s:
            for row in s.exec(select(IssuedCert).where(
                    col(IssuedCert.subject) == subject,
                    col(IssuedCert.revoked_at).is_(None))).all():
                if serials is not None and int(row.serial, 16) not in serials:
                    continue
                if keep_current and row.current:
                    continue
                row.revoked_at, row.revoke_reason, row.current = _now(), reason, False
                s.add(row)
                revoked.append(int(row.serial, 16))
            s.commit()
        return revoked

    def revoked(self) -> list[CertRecord]:
        """Every revoked certificate not yet expired (an expired one needs no listing)."""
        now = _now()
        return [c for c in self.certs() if c.revoked_at is not None and c.not_after > now]

    # -- what each device was given ---------------------------------------------------------
    def delivered(self, device: str, crl_number: int) -> None:
        with self._session() as s:
            row = s.get(TrustDelivery, device) or TrustDelivery(device=device)
            row.crl_number, row.delivered_at = crl_number, _now()
            s.add(row)
            s.commit()

    def deliveries(self) -> dict[str, int]:
        with self._session() as s:
            return {r.device: int(r.crl_number) for r in s.exec(select(TrustDelivery)).all()}
