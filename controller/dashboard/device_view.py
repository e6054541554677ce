"""The device view (Enter on a device): the last hour as sparklines, prediction against
measurement, recent requests, hardware and store, the last rollout outcome."""

from __future__ import annotations

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.message import Message
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Header, Sparkline, Static

from controller.core.alerts import Alert
from controller.core.device_models import DeviceModel, describe
from controller.dashboard.widgets import SEVERITY_STYLE, STATE_STYLE, safe
from controller.errors import FleetError
from controller.services.context import Fleet
from controller.services.fleet_overview import DeviceDetail, ago, device_detail

SERIES = (("ttft", "TTFT p50 ms"), ("tps", "decode tok/s p50"), ("power", "power W"),
          ("temp", "max temp °C"))


class DetailRead(Message):
    def __init__(self, detail: DeviceDetail | None, error: str = "") -> None:
        super().__init__()
        self.detail = detail
        self.error = error

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, DetailRead)


def _num(v: float | None, fmt: str = "{:.1f}") -> str:
    return "-" if v is None else fmt.format(v)


def _last(values: list[float]) -> str:
    real = [v for v in values if v]
    return f"{real[-1]:.1f}" if real else "-"


def _models(models: list[DeviceModel]) -> str:
    """Every model the device runs, one line each (nothing for a device of no model)."""
    if not models:
        return ""
    return f"\n[b]models[/b] {len(models)}" + "".join(
        f"\n  {safe(describe(m))}"
        + (f", {m.memory_bytes / 2**20:,.0f} MiB" if m.memory_bytes else "")
        + (f", used {ago(m.last_used_at)} ago" if m.last_used_at else "") for m in models)


class DeviceScreen(Screen[None]):
    BINDINGS = [Binding("escape", "app.pop_screen", "Back"), Binding("r", "refresh", "Refresh")]

    def __init__(self, fleet: Fleet, name: str, alerts: list[Alert], refresh_s: float) -> None:
        super().__init__()
        self.fleet = fleet
        self.device_name = name
        self.alerts = alerts
        self.refresh_s = refresh_s
        self.reads = 0

    def compose(self) -> ComposeResult:
        yield Header()
        with VerticalScroll(id="device-body"):
            yield Static(f"[b]{self.device_name}[/b] loading…", id="device-head")
            yield Static("", id="device-alerts")
            for key, title in SERIES:
                with Horizontal(classes="series"):
                    yield Static(title, classes="series-title")
                    yield Sparkline([], id=f"spark-{key}", summary_function=max)
                    yield Static("-", id=f"last-{key}", classes="series-last")
            with Horizontal(id="device-facts"):
                yield Static("", id="device-prediction", classes="facts")
                yield Static("", id="device-store", classes="facts")
            with Vertical(id="device-recent-box"):
                yield DataTable(id="device-recent", zebra_stripes=True, cursor_type="none")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#device-recent", DataTable).add_columns(
            "ago", "variant", "outcome", "TTFT ms", "tok/s", "tokens", "J", "meter")
        self.action_refresh()
        if self.refresh_s > 0:
            self.set_interval(self.refresh_s, self.action_refresh)

    def action_refresh(self) -> None:
        self.read_detail()

    @work(thread=True, exclusive=True, group="device")
    def read_detail(self) -> None:
        try:
            self.post_message(DetailRead(device_detail(self.fleet, self.device_name)))
        except FleetError as exc:
            self.post_message(DetailRead(None, exc.message))

    def on_detail_read(self, message: DetailRead) -> None:
        self.reads += 1
        d = message.detail
        if d is None:
            self.query_one("#device-head", Static).update(f"[red]{safe(message.error)}[/]")
            return
        live = d.live
        state = live.state if live is not None else "unknown"
        style = STATE_STYLE.get(state, "red")
        runs = (f"{safe(live.active_model)} {safe(live.active_variant)}"
                + (f" with adapter {safe(d.device.adapter)}" if d.device.adapter else "")
                + (" [yellow](on trial)[/]" if live.on_trial else "")) if (
            live is not None and live.active_model) else "no model"
        seen = "never collected" if live is None else f"last contact {ago(live.last_ok_ts)} ago"
        self.query_one("#device-head", Static).update(
            f"[b]{d.device.name}[/b]  group {','.join(d.device.group_names)}  [{style}]{state}[/]  "
            f"runs {runs}  {seen}"
            # an unreachable device's error is its alert, below
            + (f"\n[yellow]{safe(live.last_error)}[/]" if live is not None and live.last_error
               and state == "drifted" else ""))
        self.query_one("#device-alerts", Static).update("\n".join(
            f"[{SEVERITY_STYLE[a.severity]}]{a.severity}: {a.kind}: {safe(a.message)}[/]"
            for a in self.alerts))
        for key, values in (("ttft", d.ttft_p50), ("tps", d.tps_p50), ("power", d.power_w),
                            ("temp", d.temp_c)):
            self.query_one(f"#spark-{key}", Sparkline).data = values
            self.query_one(f"#last-{key}", Static).update(_last(values))
        off = d.tps_off
        flag = (f"\n[yellow]off by {off:+.0%}: run `fleet device calibrate {d.device.name}`[/]"
                if off is not None and abs(off) > 0.3 else "")
        self.query_one("#device-prediction", Static).update(
            f"[b]predicted vs measured[/b] (last hour, {d.prediction_source or 'none'})\n"
            f"decode tok/s  {_num(d.predicted_tps)} vs {_num(d.measured_tps)}\n"
            f"TTFT ms       {_num(d.predicted_ttft_ms, '{:.0f}')} (128-token prompt) vs "
            f"{_num(d.measured_ttft_ms, '{:.0f}')}" + flag)
        hw = "  ".join(f"{k} {safe(v)}" for k, v in d.hardware.items() if v)
        store = "-"
        if live is not None:
            store = (f"active {safe(live.active_variant or '-')}"
                     f"{' (on trial)' if live.on_trial else ''}, previous "
                     f"{safe(live.previous_variant or '-')}; crashes {live.worker_crashes}; "
                     f"{_num(live.power_w)} W {safe(live.energy_meter)}; "
                     f"CPU {_num(live.cpu_percent, '{:.0f}')} %"
                     + (f"; [red]throttled: {safe(live.throttle_reasons)}[/]" if live.throttled
                        else ""))
        rollout = d.last_rollout
        last = (f"{rollout.step} {safe(rollout.variant)} ({rollout.rollout}): "
                f"{safe(rollout.reason)}"
                if rollout else "none")
        self.query_one("#device-store", Static).update(
            f"[b]hardware[/b] {hw}\n[b]store[/b] {store}\n[b]last rollout[/b] {last}"
            + _models(d.models))
        table = self.query_one("#device-recent", DataTable)
        table.clear()
        for r in d.recent:
            style = "" if r.outcome == "ok" else "red"
            outcome = f"[{style}]{r.outcome}[/]" if style else r.outcome
            table.add_row(ago(r.ts), safe(r.variant), outcome, f"{r.ttft_ms:.0f}",
                          f"{r.decode_tps:.1f}", str(r.tokens), f"{r.joules:.2f}", safe(r.meter))
