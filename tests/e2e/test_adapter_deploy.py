"""`fleet deploy MODEL --adapter NAME` on a real lab (real sshd, real agents, real llama.cpp):
the adapter goes only where its base is active (a device without it is skipped with the
reason), is loaded on trial on the device's own variant, health-gated generating with it,
committed; a failed gate gives it up and the device serves exactly what it served before
(the base alone, or its previous adapter); a canary's failure stops the rollout."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from controller.services.context import Fleet
from controller.testmodels import TinyLoraSpec, write_tiny_lora
from tests.conftest import Cli, Result

PROMPT = "The edge device"
IMPOSSIBLE_GATE = ("--min-tps", "1000000")  # no device decodes a million tokens per second


def _outputs(names: list[str], adapter: str | None = None) -> dict[str, str]:
    """Greedy text of each device's agent (adapter None: what requests naming none get)."""
    fleet = Fleet.open()
    out = {}
    for name in names:
        with fleet.client(fleet.inventory.get_device(name)) as client:
            out[name] = client.generate(PROMPT, max_tokens=12, adapter=adapter).text
    return out


def _deploy(cli: Cli, *args: str) -> tuple[Result, dict[str, dict[str, str]]]:
    r = cli("deploy", "tiny-llama", *args, "--json")
    outcomes = {o["device"]: o for o in json.loads(r.out)["outcomes"]} if r.out else {}
    return r, outcomes


def test_adapter_rollout(cli: Cli, lab: Callable[..., Result], home: Path,
                         tmp_path: Path) -> None:
    lab("--devices", "4")
    r = cli("deploy", "tiny-llama", "--device", "lab-1", "--device", "lab-2")
    assert r.code == 0, r.err
    # the smallest variant on lab-3: room for two adapters beside it (one on trial)
    r = cli("deploy", "tiny-llama", "--device", "lab-3", "--prefer", "speed")
    assert r.code == 0, r.err
    for name, seed in (("kiosk", 0), ("kiosk2", 5)):
        path = tmp_path / f"{name}.gguf"
        write_tiny_lora(path, spec=TinyLoraSpec(seed=seed) if seed else TinyLoraSpec())
        assert cli("adapter", "add", name, str(path), "--base", "tiny-llama").code == 0
    based = ["lab-2", "lab-3"]
    base = _outputs(based)

    # a canary whose health gate cannot pass: given up, the rollout stops, nothing changed
    r, out = _deploy(cli, "--adapter", "kiosk", "--group", "lab", *IMPOSSIBLE_GATE)
    assert r.code == 1, r.err
    assert out["lab-2"]["status"] == "rolled-back", out["lab-2"]["reason"]
    assert "health check failed" in out["lab-2"]["reason"]
    assert "serves the base model alone again" in out["lab-2"]["reason"]
    assert out["lab-3"]["status"] == "halted", out["lab-3"]
    assert out["lab-4"]["status"] == "skipped"
    size = (home / "adapters/tiny-llama/kiosk.gguf").stat().st_size
    assert out["lab-2"]["bytes_sent"] == size  # only the adapter: the base is never sent
    assert _outputs(based) == base  # the base alone, exactly as before

    # the adapter where its base runs; the device without it is skipped with the reason
    r, out = _deploy(cli, "--adapter", "kiosk", "--group", "lab")
    assert r.code == 0, r.err
    assert {n: out[n]["status"] for n in out} == {
        "lab-1": "skipped", "lab-2": "committed", "lab-3": "committed", "lab-4": "skipped"}
    # the 2 GB Pi's budget holds its base but not the adapter beside it, as its agent counts
    assert out["lab-1"]["reason"].startswith("no memory for it: tiny-llama q2_k needs ~")
    assert "runs no model" in out["lab-4"]["reason"]
    assert "deploy tiny-llama first" in out["lab-4"]["hint"]
    assert "applies on its active tiny-llama" in out["lab-2"]["reason"]
    # lab-2 still held the verified file from the attempt above: nothing sent again
    assert (out["lab-2"]["bytes_sent"], out["lab-3"]["bytes_sent"]) == (0, size)
    kiosk = _outputs(based)
    assert kiosk == _outputs(based, "kiosk")  # the committed adapter serves by default
    assert all(kiosk[n] != base[n] for n in based), (kiosk, base)
    assert _outputs(based, "") == base  # the base alone is still there, unchanged
    fleet = Fleet.open()
    for name in based:  # the base was never sent again
        with fleet.client(fleet.inventory.get_device(name)) as client:
            held = [(m.name, m.active) for m in client.list_models() if m.format == "lora"]
            assert held == [("kiosk", True)]
    status = {d["device"]: d for d in json.loads(cli("status", "--json").out)["devices"]}
    assert [status[n]["adapter"] for n in ("lab-1", "lab-2", "lab-3", "lab-4")] == [
        None, "kiosk", "kiosk", None]
    assert "tiny-llama+kiosk" in cli("status").out
    # each model row names its adapter, as the rollout recorded it and as the agents report it
    for recorded_by in ("rollout", "collector"):
        status = {d["device"]: d for d in json.loads(cli("status", "--json").out)["devices"]}
        assert [[(m["name"], m["adapter"]) for m in status[n]["models"]]
                for n in ("lab-2", "lab-3")] == [[("tiny-llama", "kiosk")]] * 2, recorded_by
        assert cli("collect").code == 0
    again, out = _deploy(cli, "--adapter", "kiosk", "--group", "lab")
    assert again.code == 0 and out["lab-2"]["status"] == "unchanged"

    # a new adapter that fails its gate: the previous adapter serves again, exactly
    r, out = _deploy(cli, "--adapter", "kiosk2", "--device", "lab-3", *IMPOSSIBLE_GATE)
    assert r.code == 1 and out["lab-3"]["status"] == "rolled-back", out["lab-3"]["reason"]
    assert "serves its previous adapter kiosk again" in out["lab-3"]["reason"]
    assert _outputs(["lab-3"]) == {"lab-3": kiosk["lab-3"]}
    shown = json.loads(cli("rollouts", "--json").out)
    assert shown["rollouts"][0]["model"] == "tiny-llama+kiosk2"


def test_nothing_to_apply_on_says_why(cli: Cli, lab: Callable[..., Result],
                                      tmp_path: Path) -> None:
    lab("--devices", "1")
    path = tmp_path / "kiosk.gguf"
    write_tiny_lora(path)
    assert cli("adapter", "add", "kiosk", str(path), "--base", "tiny-llama").code == 0
    r = cli("deploy", "tiny-llama", "--adapter", "kiosk", "--group", "lab")
    assert r.code == 1
    assert "nothing deployed: adapter kiosk applies on none of the 1 device(s)" in r.err
    assert "hint: deploy tiny-llama first" in r.err and "Traceback" not in r.err
    r = cli("deploy", "tiny-llama", "--adapter", "nope", "--group", "lab")
    assert r.code == 2 and "tiny-llama has no adapter 'nope' (it has: kiosk)" in r.err


def test_a_site_reads_the_adapter_from_each_other(cli: Cli, lab: Callable[..., Result],
                                                  home: Path, tmp_path: Path) -> None:
    """An adapter fans out like a model: the controller sends the site one copy, its devices
    read it from each other (a chain), each verifying it before loading. (Devices of no site get
    it from the controller: test_adapter_rollout.)"""
    lab("--devices", "3", "--profiles", "lab-orin-nano-8gb")
    devices = ["lab-1", "lab-2", "lab-3"]
    for name in devices:
        assert cli("device", "label", name, "site=shop").code == 0
    r = cli("deploy", "tiny-llama", "--group", "lab", "--concurrency", "3")
    assert r.code == 0, r.err
    base = _outputs(devices)
    write_tiny_lora(tmp_path / "kiosk.gguf")
    assert cli("adapter", "add", "kiosk", str(tmp_path / "kiosk.gguf"), "--base",
               "tiny-llama").code == 0
    size = (home / "adapters/tiny-llama/kiosk.gguf").stat().st_size

    r, out = _deploy(cli, "--adapter", "kiosk", "--group", "lab", "--concurrency", "3",
                     "--canary", "0")
    assert r.code == 0, r.err
    assert [out[n]["status"] for n in devices] == ["committed"] * 3, out
    assert out["lab-1"]["bytes_sent"] == size and out["lab-1"]["peer_bytes"] == {}
    assert out["lab-2"]["bytes_sent"] == 0 and out["lab-2"]["peer_bytes"] == {"lab-1": size}
    assert out["lab-3"]["bytes_sent"] == 0 and out["lab-3"]["peer_bytes"] == {"lab-2": size}
    kiosk = _outputs(devices)
    assert all(kiosk[n] != base[n] for n in devices) and kiosk == _outputs(devices, "kiosk")
