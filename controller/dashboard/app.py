"""`fleet dashboard`: a Textual view of the fleet. Attributes down, messages up: a thread
worker asks the agents and posts a ``FleetRefreshed`` message back to the app."""

from __future__ import annotations

from pathlib import Path

from textual import work
from textual.app import App, ComposeResult
from textual.message import Message
from textual.widgets import DataTable, Footer, Header, Static

from controller.services import history, observing
from controller.services.context import Fleet

DEVICE_COLUMNS = ("device", "group", "profile", "state", "model", "variant", "requests",
                  "TTFT ms", "latency ms", "tok/s", "crashes", "power W", "J/tok", "meter",
                  "CPU %")
ROLLOUT_COLUMNS = ("when", "rollout", "device", "model", "variant", "status", "reason")


class FleetRefreshed(Message):
    def __init__(self, rows: list[observing.DeviceStatus],
                 rollouts: list[tuple[history.RolloutSummary, history.DeviceStep]]) -> None:
        super().__init__()
        self.rows = rows
        self.rollouts = rollouts

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, FleetRefreshed)


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


class FleetDashboard(App[None]):
    CSS_PATH = Path(__file__).with_name("app.tcss")
    TITLE = "edgefleet"
    BINDINGS = [("q", "quit", "Quit"), ("r", "refresh", "Refresh")]

    def __init__(self, fleet: Fleet, refresh_s: float = 2.0) -> None:
        super().__init__()
        self.fleet = fleet
        self.refresh_s = refresh_s
        self.refreshes = 0

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static("loading…", id="summary")
        yield DataTable(id="devices", zebra_stripes=True, cursor_type="row")
        yield DataTable(id="rollouts", zebra_stripes=True)
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#devices", DataTable).add_columns(*DEVICE_COLUMNS)
        self.query_one("#rollouts", DataTable).add_columns(*ROLLOUT_COLUMNS)
        self.action_refresh()
        if self.refresh_s > 0:
            self.set_interval(self.refresh_s, self.action_refresh)

    def action_refresh(self) -> None:
        self.poll_fleet()

    @work(thread=True, exclusive=True)
    def poll_fleet(self) -> None:
        devices = self.fleet.inventory.list_devices()
        rows = observing.status(self.fleet, devices)
        self.post_message(FleetRefreshed(rows, history.latest_devices(self.fleet, 20)))

    def on_fleet_refreshed(self, message: FleetRefreshed) -> None:
        self.refreshes += 1
        table = self.query_one("#devices", DataTable)
        table.clear()
        for r in message.rows:
            table.add_row(r.device.name, ",".join(r.device.group_names),
                          r.device.profile or "-", r.state,
                          r.active_model or "-", r.active_variant or "-", str(r.requests),
                          _fmt(r.last_ttft_ms), _fmt(r.last_latency_ms),
                          _fmt(r.last_tokens_per_s), str(r.worker_crashes), _fmt(r.power_w),
                          "-" if r.joules_per_token is None else f"{r.joules_per_token:.3f}",
                          r.energy_meter or "-", _fmt(r.cpu_percent), key=r.device.name)
        rollouts = self.query_one("#rollouts", DataTable)
        rollouts.clear()
        for summary, d in message.rollouts:
            when = d.updated_at.strftime("%H:%M:%S") if d.updated_at else "-"
            rollouts.add_row(when, summary.rollout, d.device, summary.model, d.variant or "-",
                             d.step, d.reason or "")
        online = sum(r.online for r in message.rows)
        self.query_one("#summary", Static).update(
            f"{len(message.rows)} devices, {online} online, "
            f"{sum(1 for r in message.rows if r.active_variant)} serving a model"
        )


def make_dashboard(fleet: Fleet, refresh_s: float = 2.0) -> FleetDashboard:
    return FleetDashboard(fleet, refresh_s)
