"""The controller on PostgreSQL: any SQLAlchemy URL works, not only the SQLite default.

A throwaway server is started for the test (initdb + pg_ctl in a temporary directory, on a
Unix socket only); the test is skipped where PostgreSQL is not installed (scripts/setup.sh
installs it)."""

from __future__ import annotations

import glob
import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.conftest import Cli, Result


def _pg_bin(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    return candidates[-1] if candidates else None


@pytest.fixture
def pg_url() -> Iterator[str]:
    initdb, pg_ctl = _pg_bin("initdb"), _pg_bin("pg_ctl")
    if not initdb or not pg_ctl:
        pytest.skip("PostgreSQL is not installed")
    # not under pytest's 0700 tree: the server runs as another user when we are root
    root = Path(tempfile.mkdtemp(prefix="edgefleet-pg-"))
    data, sock = root / "data", root / "sock"
    sock.mkdir()
    as_user: list[str] = []
    if os.geteuid() == 0:  # initdb refuses root: run the server as the postgres user
        as_user = ["runuser", "-u", "postgres", "--"]
        shutil.chown(root, "postgres")
        shutil.chown(sock, "postgres")
        root.chmod(0o755)
    subprocess.run([*as_user, initdb, "-D", str(data), "-U", "fleet", "--auth=trust", "-E",
                    "UTF8"], check=True, capture_output=True)
    subprocess.run([*as_user, pg_ctl, "-D", str(data), "-l", str(root / "log"), "-w", "-o",
                    f"-c listen_addresses='' -c unix_socket_directories={sock} -p 5439",
                    "start"], check=True, capture_output=True)
    try:
        yield f"postgresql+psycopg2://fleet@/postgres?host={sock}&port=5439"
    finally:
        subprocess.run([*as_user, pg_ctl, "-D", str(data), "-m", "immediate", "stop"],
                       capture_output=True)
        shutil.rmtree(root, ignore_errors=True)


def test_the_whole_path_on_postgresql(cli: Cli, lab: Callable[..., Result], pg_url: str,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLEET_DB_URL", pg_url)
    lab("--devices", "2")
    deployed = cli("deploy", "tiny-llama", "--group", "lab", "--json")
    assert deployed.code == 0, deployed.err
    assert {o["status"] for o in json.loads(deployed.out)["outcomes"]} == {"deployed"}
    listed = json.loads(cli("device", "list", "--json").out)
    assert {(d["name"], d["variant"]) for d in listed} == {("lab-1", "q2_k"),
                                                          ("lab-2", "q4_k_m")}
    # --db takes a URL too, and bad input leaves PostgreSQL as it was
    assert cli("--db", pg_url, "device", "add", "k1", "--host", "h", "--group", "g").code == 0
    dup = cli("--db", pg_url, "device", "add", "k1", "--host", "h", "--group", "g")
    assert dup.code == 2 and "already exists" in dup.err
    status = json.loads(cli("status", "--json").out)
    assert len(status) == 3
