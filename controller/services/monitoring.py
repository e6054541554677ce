"""`fleet monitor`: collect every ``interval_s`` until stopped, optionally serving Prometheus
metrics. Each tick starts a contact with every device not already being contacted (nor backing
off after failures); finished contacts are written as they come. A heartbeat row tells
`fleet status` and the dashboard that the database is being kept fresh."""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from controller.core.telemetry_records import Fetched, Stored, Unreached

if TYPE_CHECKING:  # gRPC and the collector are loaded when a pass runs, not to ask
    from controller.adapters.tables import Device
    from controller.services.collecting import PassReport
    from controller.services.context import Fleet

PRUNE_EVERY_S = 3600.0

Observer = Callable[[list[Stored], list[Fetched | Unreached]], None]


def run(fleet: Fleet, select: Callable[[], list[Device]], stop: threading.Event,
        interval_s: float = 5.0, concurrency: int = 32, timeout_s: float = 5.0,
        observer: Observer | None = None,
        on_tick: Callable[[PassReport], None] | None = None) -> None:
    """Until ``stop`` is set. ``on_tick`` gets what was written since the previous tick."""
    from controller.services import retention
    from controller.services.collecting import Collector, PassReport

    collector = Collector(fleet, concurrency, timeout_s, on_stored=observer)
    name = f"{socket.gethostname()}:{os.getpid()}"
    started = time.time()
    next_tick = time.monotonic()
    last_prune = 0.0
    report = PassReport()
    tick_started = time.monotonic()
    try:
        while not stop.is_set():
            now = time.monotonic()
            if now >= next_tick:
                devices = select()
                if on_tick is not None and report.devices:
                    report.seconds = now - tick_started
                    on_tick(report)
                report = PassReport(devices=len(devices))
                tick_started = now
                collector.submit(devices)
                next_tick = now + interval_s
                collector.store.beat(name, started, time.time(), interval_s, len(devices),
                                     report.seconds)
                if time.time() - last_prune > PRUNE_EVERY_S:
                    retention.prune(fleet)
                    last_prune = time.time()
            collector.drain(min(0.25, max(0.01, next_tick - time.monotonic())), report)
    finally:
        collector.close()
        collector.store.end_beat(name)


def monitor_running(fleet: Fleet, now: float | None = None) -> bool:
    """Is a `fleet monitor` keeping this database fresh (a beat within 3 intervals)?"""
    import sqlalchemy as sa

    from controller.adapters.telemetry_db import BEAT

    now = time.time() if now is None else now
    with fleet.inventory.engine.connect() as conn:
        for row in conn.execute(sa.select(BEAT.c.beat_ts, BEAT.c.interval_s)):
            if now - row.beat_ts <= 3 * max(row.interval_s, 1.0) + 2:
                return True
    return False
