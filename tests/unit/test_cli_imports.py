"""Commands pay only for what they use: `fleet --help` and `fleet device list` never import
gRPC, paramiko, Textual, numpy (nor the ORM where a SQLite database is current), and the
light device-list path reads the same rows as the SQLModel one. The time itself is
bench/cli_startup.py's (no timed assertions here)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from controller.adapters.device_rows import read_devices
from controller.adapters.tables import Device
from controller.services.context import Fleet
from tests.conftest import Cli

ROOT = Path(__file__).resolve().parents[2]
NEVER = ("grpc", "paramiko", "textual", "numpy", "cryptography", "gguf", "onnxruntime",
         "llama_cpp", "prometheus_client")
HEAVY_DB = ("sqlalchemy", "sqlmodel", "alembic", "rich")


def _imported(home: Path, *args: str) -> tuple[int, set[str]]:
    """Run `fleet ARGS` in a fresh interpreter; its exit code and top-level modules loaded."""
    code = ("import sys\n"
            "from controller.cli.app import main\n"
            f"code = main({list(args)!r})\n"
            "sys.stderr.write('\\nMODULES ' + ','.join(sorted({m.split('.')[0] for m in "
            "sys.modules})) + '\\n')\n"
            "sys.exit(code)\n")
    env = {**os.environ, "FLEET_HOME": str(home)}
    env.pop("FLEET_DB_URL", None)
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)
    line = [ln for ln in done.stderr.splitlines() if ln.startswith("MODULES ")][-1]
    return done.returncode, set(line.removeprefix("MODULES ").split(","))


@pytest.fixture
def filled(home: Path) -> Path:
    f = Fleet.open()
    f.inventory.add_group("site-a", ["europe"])
    f.inventory.add_device(Device(name="kiosk-1", host="10.0.0.1", profile="rpi5-8gb",
                                  labels_json=json.dumps({"site": "berlin", "n": 3}),
                                  tls=True, lab=False, last_ttft_ms=12.5), ["site-a", "canary"])
    f.inventory.add_device(Device(name="kiosk-2", host="10.0.0.2", ssh_port=2222), [])
    f.inventory.update_device("kiosk-2", last_tokens_per_s=7.0, state="online")
    return home


def test_help_loads_no_device_library_nor_the_database(home: Path) -> None:
    code, modules = _imported(home, "--help")
    assert code == 0
    assert not modules & {*NEVER, *HEAVY_DB}, modules & {*NEVER, *HEAVY_DB}
    code, modules = _imported(home, "device", "--help")
    assert code == 0 and not modules & {*NEVER, *HEAVY_DB}


def test_device_list_reads_a_current_sqlite_database_without_the_orm(filled: Path) -> None:
    for args in (("device", "list"), ("device", "list", "--json"),
                 ("device", "list", "--group", "europe")):
        code, modules = _imported(filled, *args)
        assert code == 0, args
        assert not modules & {*NEVER, *HEAVY_DB}, (args, modules & {*NEVER, *HEAVY_DB})


def test_status_from_the_database_contacts_nothing(filled: Path) -> None:
    code, modules = _imported(filled, "status", "--json", "--no-collect")
    assert code == 0
    assert not modules & set(NEVER), modules & set(NEVER)


def test_both_device_list_paths_give_the_same_rows(filled: Path, cli: Cli) -> None:
    url = f"sqlite:///{filled / 'fleet.db'}"
    inventory = Fleet.open().inventory
    for group in (None, "europe", "site-a", "canary", "ungrouped", "all"):
        light = read_devices(url, group)
        devices = inventory.devices_in_group(group) if group else inventory.list_devices()
        orm = [{**d.model_dump(exclude={"probed_json", "labels_json"}),
                "groups": d.group_names, "labels": d.labels} for d in devices]
        assert light is not None, group
        assert json.loads(json.dumps(light, default=str)) == json.loads(
            json.dumps(orm, default=str)), group
    assert [d["name"] for d in read_devices(url, "europe") or []] == ["kiosk-1"]
    listed = cli("device", "list")
    assert listed.code == 0
    assert "canary,site-a" in listed.out and "n=3,site=berlin" in listed.out
    assert "10.0.0.2:2222" in listed.out


def test_the_light_path_steps_aside_where_it_cannot_answer(filled: Path, cli: Cli) -> None:
    url = f"sqlite:///{filled / 'fleet.db'}"
    assert read_devices(url, "nope") is None  # the inventory says which groups exist
    unknown = cli("device", "list", "--group", "nope")
    assert unknown.code == 2 and "no group named 'nope'" in unknown.err
    Fleet.open().inventory.add_group("empty", [])
    assert read_devices(url, "empty") is None
    assert cli("device", "list", "--group", "empty").code == 2
    assert read_devices(f"sqlite:///{filled / 'missing.db'}", None) is None
    assert read_devices("postgresql+psycopg://fleet@db/fleet", None) is None
    import sqlite3

    with sqlite3.connect(filled / "fleet.db") as db:  # an older schema: the ORM path migrates
        db.execute("UPDATE alembic_version SET version_num = '0003_group_membership'")
    assert read_devices(url, None) is None
