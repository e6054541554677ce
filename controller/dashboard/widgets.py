"""Small widgets of the dashboard: the summary strip, the help screen."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.markup import escape
from textual.screen import ModalScreen
from textual.widgets import Static

from controller.core.display import terminal_safe
from controller.services.fleet_overview import FleetOverview

STATE_STYLE = {"deployed": "green", "serving": "green", "idle": "green", "on trial": "yellow",
               "drifted": "yellow", "unreachable": "red", "unknown": "dim"}
SEVERITY_STYLE = {"critical": "bold red", "warning": "yellow", "info": "cyan"}


def per_meter(values: dict[str, float], fmt: str) -> str:
    """Figures of different meters side by side, never added up."""
    if not values:
        return "-"
    return " + ".join(f"{fmt.format(v)} {m}" for m, v in sorted(values.items()))


def summary_text(o: FleetOverview, alerts: int) -> str:
    states = "  ".join(f"[{STATE_STYLE.get(s, 'red')}]{n} {s}[/]"
                       for s, n in sorted(o.states.items(), key=lambda kv: -kv[1]))
    p95 = "-" if o.p95_ttft_ms is None else f"{o.p95_ttft_ms:.0f} ms"
    alert_part = f"  [bold red]{alerts} alerts[/]" if alerts else "  no alerts"
    return (f"{states or 'no devices'}{alert_part}\n"
            f"{o.requests_per_min:.1f} req/min  p95 TTFT {p95}  "
            f"{per_meter(o.power_w, '{:.1f}')} W  "
            f"{per_meter(o.joules_per_token, '{:.3f}')} J/tok  "
            f"{per_meter(o.gco2e_today, '{:.1f}')} gCO2e today")


HELP = """\
[b]edgefleet dashboard[/b]: reads the database; collects in the background
unless `fleet monitor` keeps it fresh

[b]everywhere[/b]
  ?      this help              q      quit
  r      refresh now            1 2 3  fleet / rollouts / alerts

[b]fleet[/b]
  ↑ ↓    move                   enter  device view
  s / S  sort by the next column / reverse (or click a header)
  /      filter: words match name, group, profile, model, variant;
         group:G  label:k=v  state:unreachable  alert  alert:KIND
  escape clear the filter

[b]device view[/b]
  escape back to the fleet      r      refresh"""


class HelpScreen(ModalScreen[None]):
    BINDINGS = [Binding("escape,q,question_mark", "dismiss", "Close")]

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="help-box"):
            yield Static(HELP, id="help-text")

    def action_dismiss(self, result: None = None) -> None:  # type: ignore[override]
        self.dismiss(None)


def safe(value: object) -> str:
    """Text from a device, shown literally: no markup, no terminal control sequences."""
    return escape(terminal_safe(str(value)))
