"""`fleet telemetry`, `fleet alerts`, `fleet slo`, `fleet carbon`, `fleet retention` on what the
collector gathered from a real lab, and the plan's predictions recorded for a rollout."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable

import pytest
from sqlmodel import select

from controller.adapters.tables import PlanPrediction
from controller.services import history
from controller.services.context import Fleet
from tests.conftest import Cli, Result


def test_variants_side_by_side_alerts_slo_and_carbon(
        cli: Cli, lab: Callable[..., Result], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLEET_AGENT_SAMPLE_S", "0.5")  # the lab's agents sample often
    lab("--devices", "2", "--profiles", "lab-pi4-2gb,lab-n100-16gb")
    assert cli("deploy", "tiny-llama", "--group", "lab").code == 0
    for _ in range(3):
        assert cli("generate", "hello", "--group", "lab", "--max-tokens", "6").code == 0
    assert cli("collect").code == 0
    out = cli("telemetry", "--by", "variant", "--since", "1h", "--json")
    assert out.code == 0, out.err
    rep = json.loads(out.out)
    assert rep["source"] == "raw" and rep["accuracy"] == "exact"
    rows = {(r["variant"], r["profile"]): r for r in rep["rows"]}
    assert set(rows) == {("q2_k", "lab-pi4-2gb"), ("f16", "lab-n100-16gb")}
    q2 = rows[("q2_k", "lab-pi4-2gb")]
    assert q2["requests"] >= 3 and q2["ttft_ms"]["p95"] >= q2["ttft_ms"]["p50"] > 0
    assert q2["decode_tokens_per_s"]["p50"] > 0
    assert q2["predicted"]["decode_tokens_per_s"] > 0  # the selector's number beside it
    assert [e["meter"] for e in q2["energy"]] == ["estimated"]  # a lab never "measures"
    assert q2["energy"][0]["gco2e"] > 0 and q2["energy"][0]["grid"] == ["475 g/kWh (default)"]
    table = list(csv.DictReader(io.StringIO(cli("telemetry", "--csv").out)))
    assert {r["device"] for r in table} == {"lab-1", "lab-2"} and table[0]["meter"]

    assert cli("carbon", "set", "120", "--group", "lab").code == 0
    again = json.loads(cli("telemetry", "--device", "lab-1", "--json").out)["rows"][0]
    assert again["energy"][0]["grid"] == ["120 g/kWh (group:lab)"]
    assert cli("carbon", "set", "-3").code == 2

    assert cli("slo", "set", "--group", "lab", "--p95-ttft-ms", "0.001").code == 0
    alerts = json.loads(cli("alerts", "--json").out)["alerts"]
    assert {a["device"] for a in alerts if a["kind"] == "slo-breach"} == {"lab-1", "lab-2"}
    assert cli("slo", "clear", "--group", "lab").code == 0
    cleared = json.loads(cli("alerts", "--json").out)["alerts"]
    assert not [a for a in cleared if a["kind"] == "slo-breach"]
    bad = cli("slo", "set", "--group", "nope", "--min-tps", "3")
    assert bad.code == 2 and "no group named 'nope'" in bad.err
    assert cli("telemetry", "--since", "yesterday").code == 2
    assert cli("telemetry", "--by", "colour").code == 2

    assert json.loads(cli("retention", "--raw-days", "3", "--json").out)["raw_days"] == 3
    assert cli("retention", "--raw-days", "100").code == 2  # raw longer than minute rollups


def test_a_deploy_records_its_predictions_and_its_rollout_view(
        cli: Cli, lab: Callable[..., Result]) -> None:
    lab("--devices", "2", "--profiles", "lab-pi4-2gb")
    deployed = cli("deploy", "tiny-llama", "--group", "lab", "--json")
    assert deployed.code == 0, deployed.err
    rollout = json.loads(deployed.out)["rollout"]
    fleet = Fleet.open()
    with fleet.inventory.session() as s:
        rows = s.exec(select(PlanPrediction).where(PlanPrediction.rollout == rollout)).all()
    assert {(r.device, r.variant) for r in rows} == {("lab-1", "q2_k"), ("lab-2", "q2_k")}
    assert all(r.tokens_per_s > 0 for r in rows)
    (view,) = [v for v in history.rollout_views(fleet) if v.rollout == rollout]
    assert not view.running and view.status == "completed"
    assert {s.stage for s in view.steps} == {"committed"}
    assert {s.device for s in view.steps} == {"lab-1", "lab-2"}
