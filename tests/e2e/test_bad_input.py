"""Bad input: one clear error line (plus a hint) on stderr, a non-zero exit, and the database
and the devices exactly as they were."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from controller.adapters.rollout_repo import SqlRolloutLog
from controller.services import history
from controller.services.context import Fleet
from tests.conftest import Cli, Result


def _db_state() -> dict[str, Any]:
    inv = Fleet.open().inventory
    return {
        "devices": [d.model_dump() for d in inv.list_devices()],
        "groups": inv.groups(),
        # what changed a device's model; the rollout log also keeps failed attempts
        "changed": [(r.rollout, c) for r, c in SqlRolloutLog(inv).recent(1000)
                    if c.get("committed") or c.get("rolled-back")],
    }


def _device_state() -> list[tuple[str, list[str], str, list[str]]]:
    out = []
    for d in Fleet.open().inventory.list_devices():
        if not d.lab:
            continue
        with Fleet.open().client(d) as client:
            store = client.get_store()
        incoming = sorted(p.name for p in Path(store.incoming_dir).iterdir())
        out.append((d.name, list(store.blobs), store.active_sha256, incoming))
    return out


def _assert_clean_failure(result: Result, code: int, *needles: str) -> None:
    assert result.code == code, (result.code, result.out, result.err)
    lines = result.err.strip().splitlines()
    assert lines[0].startswith("error: "), result.err
    assert all(n in lines[0] for n in needles), lines[0]
    assert len(lines) <= 2 and (len(lines) == 1 or lines[1].startswith("hint: ")), result.err
    assert "Traceback" not in result.err + result.out


@pytest.fixture
def one_device(lab: Callable[..., Result]) -> None:
    lab("--devices", "1", "--profiles", "lab-n100-16gb")


@pytest.mark.parametrize(
    ("args", "code", "needle"),
    [
        (("deploy", "no-such-model", "--group", "lab"), 2, "no model named 'no-such-model'"),
        (("deploy", "tiny-llama", "--group", "nowhere"), 2, "no group named 'nowhere'"),
        (("plan", "tiny-llama", "--group", "lab", "--ctx", "999999"), 2, "--ctx 999999"),
        (("deploy", "tiny-llama"), 2, "no devices selected"),
        (("device", "add", "bad name", "--host", "h", "--group", "g"), 2, "invalid device name"),
        (("device", "add", "x", "--host", "h", "--group", "g", "--profile", "nope"), 2,
         "no profile named 'nope'"),
    ],
)
def test_usage_errors(cli: Cli, one_device: None, args: tuple[str, ...], code: int,
                      needle: str) -> None:
    before = _db_state(), _device_state()
    _assert_clean_failure(cli(*args), code, needle)
    assert (_db_state(), _device_state()) == before


def test_empty_group(cli: Cli) -> None:
    assert cli("device", "add", "kiosk-1", "--host", "127.0.0.99", "--group", "kiosks").code == 0
    assert cli("device", "remove", "kiosk-1").code == 0
    before = _db_state()
    _assert_clean_failure(cli("deploy", "tiny-llama", "--group", "kiosks"), 2,
                          "group 'kiosks' has no devices")
    assert _db_state() == before


def test_unreachable_device(cli: Cli) -> None:
    # nothing listens on 127.0.0.98:1; the connection is refused at once
    assert cli("device", "add", "ghost", "--host", "127.0.0.98", "--port", "1",
               "--agent-port", "1", "--group", "ghosts").code == 0
    before = _db_state()
    result = cli("deploy", "tiny-llama", "--group", "ghosts")
    _assert_clean_failure(result, 1, "ghost", "not reachable")
    assert _db_state() == before
    fleet = Fleet.open()
    logged = history.show(fleet, history.recent(fleet, 1)[0].rollout).devices
    assert [(d.device, d.step) for d in logged] == [("ghost", "failed")]
    assert "not reachable" in logged[0].reason
    unknown = cli("rollouts", "show", "nope")
    _assert_clean_failure(unknown, 2, "no rollout 'nope'")


def _replace_known_host_key(home: Path) -> None:
    """Swap the lab device's host key line for another (valid) key: a changed host key."""
    known = home / "known_hosts"
    other = (home / "lab" / "id_ed25519.pub").read_text().split()
    lines = [ln.split()[0] + f" {other[0]} {other[1]}" for ln in known.read_text().splitlines()]
    known.write_text("\n".join(lines) + "\n")


def test_changed_host_key_is_refused(cli: Cli, one_device: None, home: Path) -> None:
    _replace_known_host_key(home)
    before = _db_state(), _device_state()
    result = cli("deploy", "tiny-llama", "--group", "lab")
    _assert_clean_failure(result, 1, "lab-1", "CHANGED")
    assert "ssh-keygen -f" in result.err
    assert (_db_state(), _device_state()) == before


def test_unknown_host_key_is_refused(cli: Cli, one_device: None, home: Path) -> None:
    (home / "known_hosts").write_text("")
    before = _db_state(), _device_state()
    result = cli("deploy", "tiny-llama", "--group", "lab")
    _assert_clean_failure(result, 1, "lab-1", "not in")
    assert "ssh-keyscan" in result.err
    assert (_db_state(), _device_state()) == before


def test_corrupt_model_file_is_never_sent(cli: Cli, one_device: None, home: Path) -> None:
    assert cli("model", "list").code == 0  # records the ladder's hashes in the cache
    path = home / "models" / "tiny-llama" / "tiny-llama-f16.gguf"
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    tmp = path.with_suffix(".corrupt")
    tmp.write_bytes(bytes(data))
    tmp.replace(path)  # a new inode: the session's shared ladder stays intact
    before = _db_state(), _device_state()
    result = cli("deploy", "tiny-llama", "--group", "lab")
    _assert_clean_failure(result, 1, "corrupt", "tiny-llama-f16.gguf")
    assert (_db_state(), _device_state()) == before


def test_explicit_trust_on_first_use(cli: Cli, one_device: None, home: Path) -> None:
    (home / "known_hosts").write_text("")
    result = cli("device", "trust", "lab-1")
    assert result.code == 0 and "SHA256:" in result.out
    assert cli("device", "trust", "lab-1").out.strip() == "lab-1: host key already trusted"
    assert cli("deploy", "tiny-llama", "--group", "lab").code == 0


def test_accept_new_never_accepts_a_changed_key(cli: Cli, one_device: None, home: Path) -> None:
    _replace_known_host_key(home)
    result = cli("deploy", "tiny-llama", "--group", "lab", "--accept-new")
    _assert_clean_failure(result, 1, "lab-1", "CHANGED")


def test_one_dead_device_never_stops_the_others(cli: Cli, one_device: None) -> None:
    assert cli("device", "add", "ghost", "--host", "127.0.0.98", "--port", "1",
               "--agent-port", "1", "--group", "lab").code == 0
    result = cli("deploy", "tiny-llama", "--group", "lab", "--json")
    assert result.code == 1
    import json

    outcomes = {o["device"]: o for o in json.loads(result.out)["outcomes"]}
    assert outcomes["lab-1"]["status"] == "committed"
    assert outcomes["ghost"]["status"] == "failed" and "not reachable" in (
        outcomes["ghost"]["reason"])
    assert result.err.startswith("error: rollout ") and "1 of 2 devices failed; ghost:" in (
        result.err)
