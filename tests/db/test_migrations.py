"""Schema migrations on SQLite and a real PostgreSQL: a database of the previous release is
upgraded with its data intact, every revision goes down and up again, a database newer than
the code is refused untouched, and `fleet db` reports what it finds."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

import sqlalchemy as sa

from controller.adapters import schema
from controller.adapters.db import engine_for
from controller.migrations import HEAD
from tests.conftest import Cli

# The tables edgefleet 0.1.0 created (SQLModel's create_all), frozen here as that release
# wrote them, independent of the migration code under test. Columns after LATE were added to
# older databases by 0.1.0's ALTER TABLE loop: nullable, without a default, NULL in old rows.
LEGACY = sa.MetaData()
LATE = ("proxy_jump", "tls", "decode_efficiency")
sa.Table("device_group", LEGACY,
         sa.Column("name", sa.String, primary_key=True),
         sa.Column("created_at", sa.DateTime, nullable=False))
sa.Table("device", LEGACY,
         sa.Column("name", sa.String, primary_key=True),
         sa.Column("host", sa.String, nullable=False),
         sa.Column("ssh_port", sa.Integer, nullable=False),
         sa.Column("user", sa.String, nullable=False),
         sa.Column("key_path", sa.String, nullable=False),
         sa.Column("agent_port", sa.Integer, nullable=False),
         sa.Column("group_name", sa.String, sa.ForeignKey("device_group.name"), nullable=False,
                   index=True),
         sa.Column("profile", sa.String, nullable=False),
         sa.Column("data_dir", sa.String, nullable=False),
         sa.Column("probed_json", sa.String, nullable=False),
         sa.Column("state", sa.String, nullable=False),
         sa.Column("model", sa.String, nullable=False),
         sa.Column("variant", sa.String, nullable=False),
         sa.Column("sha256", sa.String, nullable=False),
         sa.Column("last_ttft_ms", sa.Float),
         sa.Column("last_latency_ms", sa.Float),
         sa.Column("last_tokens_per_s", sa.Float),
         sa.Column("last_seen", sa.DateTime),
         sa.Column("lab", sa.Boolean, nullable=False),
         sa.Column("labels_json", sa.String, nullable=False),
         sa.Column("created_at", sa.DateTime, nullable=False))
sa.Table("model_artifact", LEGACY,
         sa.Column("id", sa.Integer, primary_key=True),
         sa.Column("model", sa.String, nullable=False, index=True),
         sa.Column("variant", sa.String, nullable=False),
         sa.Column("sha256", sa.String, nullable=False),
         sa.Column("size_bytes", sa.Integer, nullable=False),
         sa.Column("path", sa.String, nullable=False),
         sa.Column("created_at", sa.DateTime, nullable=False))
sa.Table("deployment", LEGACY,
         sa.Column("id", sa.Integer, primary_key=True),
         sa.Column("rollout", sa.String, nullable=False, index=True),
         sa.Column("device", sa.String, nullable=False, index=True),
         sa.Column("model", sa.String, nullable=False),
         sa.Column("variant", sa.String, nullable=False),
         sa.Column("sha256", sa.String, nullable=False),
         sa.Column("status", sa.String, nullable=False),
         sa.Column("reason", sa.String, nullable=False),
         sa.Column("bytes_sent", sa.Integer, nullable=False),
         sa.Column("started_at", sa.DateTime, nullable=False),
         sa.Column("finished_at", sa.DateTime))
# measurement came in a later 0.1.0 build than the rest: absent from the oldest databases

T0 = datetime(2026, 5, 1, 12, 0, 0)


def _legacy_database(url: str) -> None:
    """A 0.1.0 database with two devices, one from before the late columns, and history."""
    engine = sa.create_engine(url)
    LEGACY.create_all(engine)
    with engine.begin() as c:
        c.execute(sa.text("INSERT INTO device_group (name, created_at) VALUES "
                          "('kiosks', :t), ('lab', :t)"), {"t": T0})
        row = {"host": "10.0.0.5", "ssh_port": 22, "user": "pi", "key_path": "",
               "agent_port": 50051, "profile": "rpi5-8gb", "data_dir": "", "probed_json": "",
               "state": "deployed", "model": "phi3-mini", "variant": "q4_k_m",
               "sha256": "ab" * 32, "lab": False, "labels_json": '{"site": "berlin"}',
               "created_at": T0, "last_tokens_per_s": 4.5}
        c.execute(LEGACY.tables["device"].insert(), [
            {**row, "name": "kiosk-1", "group_name": "kiosks"},
            {**row, "name": "kiosk-2", "group_name": "kiosks", "state": "registered",
             "model": "", "variant": "", "sha256": "", "labels_json": "{}"}])
        for column in LATE:  # what 0.1.0's additive loop did to this database later
            kind = {"tls": "BOOLEAN", "decode_efficiency": "FLOAT"}.get(column, "VARCHAR")
            c.execute(sa.text(f'ALTER TABLE "device" ADD COLUMN "{column}" {kind}'))
        c.execute(sa.text("UPDATE device SET tls = :t, proxy_jump = 'bastion' "
                          "WHERE name = 'kiosk-2'"), {"t": True})
        c.execute(LEGACY.tables["deployment"].insert(), [
            {"rollout": "r1", "device": "kiosk-1", "model": "phi3-mini", "variant": "q4_k_m",
             "sha256": "ab" * 32, "status": "active", "reason": "fits", "bytes_sent": 2_300_000,
             "started_at": T0, "finished_at": T0}])
    engine.dispose()


def test_a_previous_release_database_is_upgraded_with_its_data(db_url: str, home: Path,
                                                               cli: Cli) -> None:
    _legacy_database(db_url)
    listed = cli("--db", db_url, "device", "list", "--json")
    assert listed.code == 0, listed.err
    devices = {d["name"]: d for d in json.loads(listed.out)["devices"]}
    assert devices["kiosk-1"]["variant"] == "q4_k_m"
    assert devices["kiosk-1"]["labels"] == {"site": "berlin"}
    engine = engine_for(db_url, migrate=False)
    with engine.connect() as c:
        rows = {r.name: r for r in c.execute(sa.text("SELECT * FROM device"))}
        # NULLs the old ALTER loop left are the columns' defaults now, set values kept
        assert rows["kiosk-1"].tls in (False, 0) and rows["kiosk-1"].proxy_jump == ""
        assert rows["kiosk-2"].tls in (True, 1) and rows["kiosk-2"].proxy_jump == "bastion"
        assert rows["kiosk-1"].last_tokens_per_s == 4.5
        # 0.1.0's rollout log moved into the rollout tables
        moved = c.execute(sa.text("SELECT rollout, device, step, bytes_sent, reason "
                                  "FROM rollout_device")).one()
        assert tuple(moved) == ("r1", "kiosk-1", "committed", 2_300_000, "fits")
    found = schema.status(engine)
    assert found.current == HEAD and found.up_to_date
    assert schema.drift(engine) == []
    if db_url.startswith("sqlite"):  # the file was copied aside before it was changed
        backups = list(Path(db_url.removeprefix("sqlite:///")).parent.glob("fleet.db.legacy.*"))
        assert len(backups) == 1
    status = cli("--db", db_url, "db", "status", "--json")
    assert status.code == 0, status.err
    assert json.loads(status.out)["current"] == HEAD and json.loads(status.out)["drift"] == []
    listed = json.loads(cli("--db", db_url, "rollouts", "--json").out)["rollouts"]
    assert [(r["rollout"], r["status"], r["steps"]) for r in listed] == [
        ("r1", "completed", {"committed": 1})]
    # and back: the downgrade puts the log where 0.1.0 reads it
    assert cli("--db", db_url, "db", "downgrade", "0001_baseline").code == 0
    with engine.connect() as c:
        back = c.execute(sa.text("SELECT rollout, device, status, bytes_sent FROM deployment"))
        assert [tuple(r) for r in back] == [("r1", "kiosk-1", "active", 2_300_000)]


def test_every_revision_goes_down_and_up_again(db_url: str, home: Path, cli: Cli) -> None:
    engine = engine_for(db_url)
    revisions = [s.revision for s in schema.scripts().walk_revisions()]  # newest first
    for revision, below in zip(revisions, [*revisions[1:], "base"], strict=True):
        schema.downgrade(engine, db_url, below)
        assert schema.status(engine).current in ("", below)
        schema.upgrade(engine, db_url, revision)
        assert schema.status(engine).current == revision
        schema.downgrade(engine, db_url, below)  # then on down, one revision at a time
    for revision in reversed(revisions):  # and back up, one at a time
        schema.upgrade(engine, db_url, revision)
        assert schema.status(engine).current == revision
    assert schema.status(engine).up_to_date and schema.drift(engine) == []


def test_a_database_newer_than_the_code_is_refused_untouched(db_url: str, home: Path,
                                                             cli: Cli) -> None:
    assert cli("--db", db_url, "device", "add", "k1", "--host", "h", "--group", "g").code == 0
    engine = engine_for(db_url, migrate=False)
    with engine.begin() as c:
        c.execute(sa.text("UPDATE alembic_version SET version_num = '9999_from_the_future'"))
    refused = cli("--db", db_url, "device", "list")
    assert refused.code == 1
    assert "9999_from_the_future" in refused.err and "newer edgefleet" in refused.err
    assert "hint:" in refused.err and "Traceback" not in refused.err
    with engine.connect() as c:
        assert c.execute(sa.text("SELECT version_num FROM alembic_version")).scalar() == (
            "9999_from_the_future")
        assert c.execute(sa.text("SELECT count(*) FROM device")).scalar() == 1


def test_head_constant_matches_the_scripts() -> None:
    assert schema.scripts().get_current_head() == HEAD


def test_db_cli_reports_an_empty_database_then_creates_it(home: Path, cli: Cli) -> None:
    url = f"sqlite:///{home / 'other.db'}"
    before = json.loads(cli("--db", url, "db", "status", "--json").out)
    assert before["current"] is None and before["pending"][-1] == HEAD
    upgraded = cli("--db", url, "db", "upgrade")
    assert upgraded.code == 0 and "up to date" in upgraded.out
    unknown = cli("--db", url, "db", "downgrade", "nope")
    assert unknown.code == 2 and "no schema revision 'nope'" in unknown.err


def test_a_hand_changed_table_is_reported(home: Path, cli: Cli) -> None:
    url = f"sqlite:///{home / 'fleet.db'}"
    assert cli("device", "list").code == 0
    with engine_for(url, migrate=False).begin() as c:
        c.execute(sa.text("ALTER TABLE device ADD COLUMN colour VARCHAR"))
    checked = cli("db", "status")
    assert checked.code == 1 and "colour" in checked.out
    assert "differs" in checked.err


def test_passwords_never_reach_the_terminal(home: Path, cli: Cli) -> None:
    url = "postgresql+psycopg://fleet:s3cret-pw@127.0.0.1:1/fleet?connect_timeout=2"
    result = cli("--db", url, "device", "list")
    assert result.code != 0
    assert "s3cret-pw" not in result.err + result.out and "***" in result.err
