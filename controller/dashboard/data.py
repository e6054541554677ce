"""What one refresh of the dashboard reads (in a thread worker), and the filter it applies:
plain data, no widgets, so it is testable and benchmarkable on its own."""

from __future__ import annotations

import functools
import time
from collections import Counter
from dataclasses import dataclass, field

from controller.core.alerts import Alert
from controller.services import alerting, fleet_overview, history, observing
from controller.services.context import Fleet
from controller.services.fleet_overview import FleetOverview
from controller.services.history import RolloutView
from controller.services.observing import DeviceStatus

ALERTS_EVERY_S = 10.0  # the summary and alerts read more rows: not on every refresh


@dataclass(frozen=True)
class FleetSummary:
    """The slower part of a refresh (rollups over windows, alert rules), read less often."""

    overview: FleetOverview
    alerts: list[Alert]


@dataclass(frozen=True)
class FleetSnapshot:
    rows: list[DeviceStatus]
    overview: FleetOverview
    rollouts: list[RolloutView]
    alerts: list[Alert]
    read_ms: float
    taken_at: float = field(default_factory=time.time)

    @property
    def summary(self) -> FleetSummary:
        return FleetSummary(self.overview, self.alerts)

    @functools.cached_property
    def _by_device(self) -> dict[str, list[Alert]]:
        out: dict[str, list[Alert]] = {}
        for a in self.alerts:
            out.setdefault(a.device, []).append(a)
        return out

    def alerts_of(self, device: str) -> list[Alert]:
        return self._by_device.get(device, [])


def read_fleet(fleet: Fleet, summary: FleetSummary | None = None) -> FleetSnapshot:
    """Everything the fleet and rollout views show, from the database only; ``summary``:
    reuse it instead of reading the overview and evaluating the alerts again."""
    started = time.perf_counter()
    devices = fleet.inventory.list_devices() if summary is None else []
    rows = observing.read(fleet, devices) if summary is None else observing.read_all(fleet)
    if summary is None:
        states = dict(Counter(r.state for r in rows))
        summary = FleetSummary(fleet_overview.overview(fleet, devices, states),
                               alerting.alerts(fleet, devices))
    rollouts = history.rollout_views(fleet, 5)
    return FleetSnapshot(rows, summary.overview, rollouts, summary.alerts,
                         (time.perf_counter() - started) * 1000)


def matches(row: DeviceStatus, query: str, alert_kinds: set[str]) -> bool:
    """``group:G``, ``label:k=v``, ``state:S``, ``alert`` (any alert) or ``alert:KIND``, and
    free words matched against name, group, profile, model and variant; all must hold."""
    d = row.device
    for word in query.split():
        key, sep, value = word.partition(":")
        key = key.lower()
        if sep and key == "group":
            ok = value in d.within  # the group or any group it is nested in
        elif sep and key == "label":
            k, _, v = value.partition("=")
            ok = d.labels.get(k) == v
        elif sep and key == "state":
            ok = row.state.replace(" ", "-") == value.replace(" ", "-")
        elif word == "alert":
            ok = bool(alert_kinds)
        elif sep and key == "alert":
            ok = value in alert_kinds
        else:
            hay = " ".join([d.name, *d.group_names, d.profile, row.active_model, d.adapter,
                            row.active_variant, *[f"{k}={v}" for k, v in d.labels.items()],
                            *[n for m in row.models for n in (m.name, *m.aliases)]])
            ok = word.lower() in hay.lower()
        if not ok:
            return False
    return True
