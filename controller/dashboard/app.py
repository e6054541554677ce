"""`fleet dashboard`: the fleet, a device, rollouts and alerts, read from the database.

Attributes down, messages up: thread workers read the database (``data.read_fleet``) and, when
no `fleet monitor` keeps it fresh, run a collection pass in the background; they post
``FleetRefreshed`` (coalesced: a newer one replaces an older one in the queue) and the widgets
only render. Nothing on the UI thread waits on a device or the database.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from textual import work
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.coordinate import Coordinate
from textual.message import Message
from textual.widgets import (
    DataTable,
    Footer,
    Header,
    Input,
    Static,
    TabbedContent,
    TabPane,
)

from controller.dashboard.data import ALERTS_EVERY_S, FleetSnapshot, matches, read_fleet
from controller.dashboard.device_view import DeviceScreen
from controller.dashboard.widgets import (
    SEVERITY_STYLE,
    STATE_STYLE,
    HelpScreen,
    safe,
    summary_text,
)
from controller.services import observing
from controller.services.collecting import Collector
from controller.services.context import Fleet
from controller.services.fleet_overview import ago
from controller.services.monitoring import monitor_running

# (key, title): the device table's columns, each sortable
COLUMNS = (("device", "device"), ("state", "state"), ("variant", "variant"),
           ("ttft", "TTFT ms"), ("tps", "tok/s"), ("power", "W"), ("temp", "°C"),
           ("jpt", "J/tok"), ("alerts", "alerts"), ("group", "group"), ("model", "model"),
           ("requests", "req"), ("seen", "seen"))
ROLLOUT_COLUMNS = ("device", "stage", "variant", "ago", "reason")
ALERT_COLUMNS = ("severity", "device", "alert", "what")


class FleetRefreshed(Message):
    def __init__(self, snapshot: FleetSnapshot) -> None:
        super().__init__()
        self.snapshot = snapshot

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, FleetRefreshed)


class CollectFinished(Message):
    def can_replace(self, message: Message) -> bool:
        return isinstance(message, CollectFinished)


def _num(v: float | None, fmt: str = "{:.1f}") -> str:
    return "-" if v is None else fmt.format(v)


def sort_value(row: observing.DeviceStatus, key: str, alerts: int) -> Any:
    """Numbers sort as numbers, unknowns last."""
    values: dict[str, Any] = {
        "device": row.device.name, "state": row.state, "variant": row.active_variant,
        "ttft": row.last_ttft_ms, "tps": row.last_tokens_per_s, "power": row.power_w,
        "temp": row.max_temp_c, "jpt": row.joules_per_token, "alerts": alerts,
        "group": ",".join(row.device.group_names), "model": row.active_model,
        "requests": row.requests, "seen": row.seen_ago_s}
    value = values[key]
    return (value is None, value if value is not None else 0)


class FleetDashboard(App[None]):
    CSS_PATH = Path(__file__).with_name("app.tcss")
    TITLE = "edgefleet"
    BINDINGS = [
        Binding("q", "quit", "Quit"),
        Binding("r", "refresh", "Refresh"),
        Binding("question_mark", "help", "Help"),
        Binding("slash", "filter", "Filter"),
        Binding("s", "sort", "Sort"),
        Binding("S", "sort(True)", "Reverse", show=False),
        Binding("escape", "clear_filter", "Clear filter", show=False),
        Binding("1", "tab('fleet')", "Fleet", show=False),
        Binding("2", "tab('rollouts')", "Rollouts", show=False),
        Binding("3", "tab('alerts')", "Alerts", show=False),
    ]

    def __init__(self, fleet: Fleet, refresh_s: float = 2.0, collect: bool = True) -> None:
        super().__init__()
        self.fleet = fleet
        self.refresh_s = refresh_s
        self.collect = collect
        self.refreshes = 0
        self.snapshot: FleetSnapshot | None = None
        self.sort_key = "device"
        self.sort_reverse = False
        self.filter_text = ""
        self._collecting = False
        self._alerts_at = 0.0
        self._collector: Collector | None = None  # kept: its connections and pool live on
        self._shown: list[tuple[str, tuple[str, ...]]] = []  # the device table's rows now

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static("reading the database…", id="summary")
        with TabbedContent(initial="fleet"):
            with TabPane("Fleet", id="fleet"):
                yield DataTable(id="devices", zebra_stripes=True, cursor_type="row")
                yield Input(placeholder="filter: words, group:G label:k=v state:S alert",
                            id="filter")
            with TabPane("Rollouts", id="rollouts"):
                yield Static("", id="rollout-head")
                yield DataTable(id="rollout-steps", zebra_stripes=True, cursor_type="row")
            with TabPane("Alerts", id="alerts"):
                yield DataTable(id="alert-table", zebra_stripes=True, cursor_type="row")
        yield Footer()

    def on_mount(self) -> None:
        devices = self.query_one("#devices", DataTable)
        for key, title in COLUMNS:
            devices.add_column(title, key=key)
        self.query_one("#rollout-steps", DataTable).add_columns(*ROLLOUT_COLUMNS)
        self.query_one("#alert-table", DataTable).add_columns(*ALERT_COLUMNS)
        self.query_one("#filter", Input).display = False
        devices.focus()
        self.action_refresh()
        if self.refresh_s > 0:
            self.set_interval(self.refresh_s, self.action_refresh)

    # -- workers: never on the UI thread ----------------------------------------------------
    def action_refresh(self) -> None:
        self.read_database()
        if self.collect and not self._collecting:
            self._collecting = True
            self.collect_in_background()

    @work(thread=True, exclusive=True, group="read")
    def read_database(self) -> None:
        fresh_alerts = time.monotonic() - self._alerts_at > ALERTS_EVERY_S
        keep = None if fresh_alerts or self.snapshot is None else self.snapshot.summary
        snapshot = read_fleet(self.fleet, keep)
        if fresh_alerts:
            self._alerts_at = time.monotonic()
        self.post_message(FleetRefreshed(snapshot))

    @work(thread=True, group="collect")
    def collect_in_background(self) -> None:
        try:
            if not monitor_running(self.fleet):
                if self._collector is None:
                    self._collector = Collector(self.fleet, 32, timeout_s=5.0)
                observing.refresh(self.fleet, self.fleet.inventory.list_devices(),
                                  wait_s=max(1.0, self.refresh_s), collector=self._collector)
        finally:
            self.post_message(CollectFinished())

    def on_unmount(self) -> None:
        if self._collector is not None:
            self._collector.close()

    def on_collect_finished(self, _message: CollectFinished) -> None:
        self._collecting = False
        self.read_database()

    # -- rendering --------------------------------------------------------------------------
    def on_fleet_refreshed(self, message: FleetRefreshed) -> None:
        self.refreshes += 1
        self.snapshot = message.snapshot
        snap = message.snapshot
        self.query_one("#summary", Static).update(summary_text(snap.overview, len(snap.alerts)))
        self._render_devices()
        self._render_rollouts()
        self._render_alerts()

    def _render_devices(self) -> None:
        snap = self.snapshot
        if snap is None:
            return
        table = self.query_one("#devices", DataTable)
        cursor = table.cursor_row
        selected = None
        if table.row_count and 0 <= cursor < table.row_count:
            selected = table.coordinate_to_cell_key(Coordinate(cursor, 0)).row_key.value
        kinds = {r.device.name: {a.kind for a in snap.alerts_of(r.device.name)}
                 for r in snap.rows}
        rows = [r for r in snap.rows if matches(r, self.filter_text, kinds[r.device.name])]
        rows.sort(key=lambda r: sort_value(r, self.sort_key, len(kinds[r.device.name])),
                  reverse=self.sort_reverse)
        cells: list[tuple[str, tuple[str, ...]]] = []
        for r in rows:
            style = STATE_STYLE.get(r.state, "red")
            alerts = snap.alerts_of(r.device.name)
            badge = ""
            if alerts:
                worst = alerts[0].severity
                badge = f"[{SEVERITY_STYLE[worst]}]{len(alerts)} {alerts[0].kind}[/]"
            cells.append((r.device.name, (
                r.device.name, f"[{style}]{r.state}[/]", safe(r.active_variant or "-"),
                _num(r.last_ttft_ms, "{:.0f}"), _num(r.last_tokens_per_s),
                _num(r.power_w), _num(r.max_temp_c, "{:.0f}"),
                _num(r.joules_per_token, "{:.3f}"), badge, ",".join(r.device.group_names),
                safe((r.active_model or "-")
                     + (f"+{r.device.adapter}" if r.device.adapter else ""))
                + (f" +{len(r.models) - 1}" if len(r.models) > 1 else ""), str(r.requests),
                "never" if r.seen_ago_s is None else ago(time.time() - r.seen_ago_s))))
        self._fill(table, cells)
        if selected is not None and selected in {r.device.name for r in rows}:
            table.move_cursor(row=table.get_row_index(selected))
        title = f"devices {len(rows)}/{len(snap.rows)} sorted by {self.sort_key}" + (
            " (reversed)" if self.sort_reverse else "") + (
            f", filter: {self.filter_text}" if self.filter_text else "")
        table.border_title = title

    def _fill(self, table: DataTable[Any], cells: list[tuple[str, tuple[str, ...]]]) -> None:
        """Same rows in the same order: update only the cells that changed (a refresh of a
        large fleet touches a few); else rebuild the table."""
        if [k for k, _ in cells] != [k for k, _ in self._shown]:
            table.clear()
            for key, values in cells:
                table.add_row(*values, key=key)
        else:
            columns = [k for k, _ in COLUMNS]
            for (key, values), (_, before) in zip(cells, self._shown, strict=True):
                if values != before:
                    for column, new, old in zip(columns, values, before, strict=True):
                        if new != old:
                            table.update_cell(key, column, new, update_width=True)
        self._shown = cells

    def _render_rollouts(self) -> None:
        snap = self.snapshot
        head = self.query_one("#rollout-head", Static)
        table = self.query_one("#rollout-steps", DataTable)
        table.clear()
        if snap is None or not snap.rollouts:
            head.update("no rollouts yet: `fleet deploy MODEL --group G`")
            return
        current = snap.rollouts[0]
        counts = ", ".join(f"{n} {k}" for k, n in sorted(current.counts.items()))
        state = (f"[yellow]{current.status}[/]" if current.running
                 or current.status in ("pending", "interrupted") else current.status)
        older = "  ".join(f"{v.rollout} {safe(v.model)} "
                          + ", ".join(f"{n} {k}" for k, n in sorted(v.counts.items()))
                          for v in snap.rollouts[1:3])
        head.update(f"[b]rollout {current.rollout}[/b] {safe(current.model)} {state}: {counts}"
                    + (f"\n[dim]before: {older}[/]" if older else ""))
        for step in current.steps:
            stage = step.stage + (f" {step.progress:.0%}" if step.progress is not None
                                  and step.progress < 1 else "")
            colour = {"committed": "green", "unchanged": "green", "staged": "green",
                      "planned": "yellow", "halted": "yellow", "skipped": "yellow",
                      "pending": "yellow", "uploading": "cyan", "loading": "cyan",
                      "on-trial": "cyan", "checking": "cyan"}.get(step.stage, "red")
            when = ago(step.updated_at.timestamp()) if step.updated_at else "-"
            table.add_row(step.device, f"[{colour}]{stage}[/]", safe(step.variant or "-"), when,
                          safe(step.reason))

    def _render_alerts(self) -> None:
        snap = self.snapshot
        table = self.query_one("#alert-table", DataTable)
        table.clear()
        for a in snap.alerts if snap else []:
            table.add_row(f"[{SEVERITY_STYLE[a.severity]}]{a.severity}[/]", a.device, a.kind,
                          safe(a.message))

    # -- actions ----------------------------------------------------------------------------
    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        if event.data_table.id != "devices" or event.row_key.value is None:
            return
        name = str(event.row_key.value)
        alerts = self.snapshot.alerts_of(name) if self.snapshot else []
        self.push_screen(DeviceScreen(self.fleet, name, alerts, self.refresh_s))

    def on_data_table_header_selected(self, event: DataTable.HeaderSelected) -> None:
        if event.data_table.id != "devices":
            return
        key = str(event.column_key.value)
        if key == self.sort_key:
            self.sort_reverse = not self.sort_reverse
        else:
            self.sort_key, self.sort_reverse = key, False
        self._render_devices()

    def action_sort(self, reverse: bool = False) -> None:
        if reverse:
            self.sort_reverse = not self.sort_reverse
        else:
            keys = [k for k, _ in COLUMNS]
            self.sort_key = keys[(keys.index(self.sort_key) + 1) % len(keys)]
            self.sort_reverse = False
        self._render_devices()

    def action_filter(self) -> None:
        self.query_one(TabbedContent).active = "fleet"
        box = self.query_one("#filter", Input)
        box.display = True
        box.focus()

    def on_input_changed(self, event: Input.Changed) -> None:
        if event.input.id == "filter":
            self.filter_text = event.value.strip()
            self._render_devices()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        if event.input.id == "filter":
            self.query_one("#devices", DataTable).focus()

    def action_clear_filter(self) -> None:
        box = self.query_one("#filter", Input)
        box.value = ""
        box.display = False
        self.filter_text = ""
        self._render_devices()
        self.query_one("#devices", DataTable).focus()

    def action_tab(self, tab: str) -> None:
        self.query_one(TabbedContent).active = tab
        target = {"fleet": "#devices", "rollouts": "#rollout-steps", "alerts": "#alert-table"}
        self.query_one(target[tab], DataTable).focus()

    def action_help(self) -> None:
        self.push_screen(HelpScreen())


def make_dashboard(fleet: Fleet, refresh_s: float = 2.0, collect: bool = True
                   ) -> FleetDashboard:
    """The app, shared by `fleet dashboard` and the tests (``collect=False``: read only)."""
    return FleetDashboard(fleet, refresh_s, collect)
