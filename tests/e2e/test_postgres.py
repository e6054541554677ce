"""The controller on PostgreSQL: any SQLAlchemy URL works, not only the SQLite default.

A throwaway server is started for the test (``pg_url`` in tests/conftest.py)."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest

from tests.conftest import Cli, Result


def test_the_whole_path_on_postgresql(pg_url: str, cli: Cli, lab: Callable[..., Result],
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLEET_DB_URL", pg_url)
    lab("--devices", "2")
    deployed = cli("deploy", "tiny-llama", "--group", "lab", "--json")
    assert deployed.code == 0, deployed.err
    assert {o["status"] for o in json.loads(deployed.out)["outcomes"]} == {"committed"}
    listed = json.loads(cli("device", "list", "--json").out)["devices"]
    assert {(d["name"], d["variant"]) for d in listed} == {("lab-1", "q2_k"),
                                                          ("lab-2", "q4_k_m")}
    # --db takes a URL too, and bad input leaves PostgreSQL as it was
    assert cli("--db", pg_url, "device", "add", "k1", "--host", "h", "--group", "g").code == 0
    dup = cli("--db", pg_url, "device", "add", "k1", "--host", "h", "--group", "g")
    assert dup.code == 2 and "already exists" in dup.err
    status = json.loads(cli("status", "--json").out)["devices"]
    assert len(status) == 3
