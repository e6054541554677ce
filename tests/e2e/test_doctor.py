"""`fleet doctor` against a real lab: all well (exit 0); an agent down behind a working sshd
(exit 1, fix: rescue); an unknown host key (fix: trust); a device nobody answers for (exit 4
when that is the only problem); a database URL without its driver."""

from __future__ import annotations

import json
import os
import signal
from collections.abc import Callable
from pathlib import Path

from agent import __version__
from controller import lab as lab_module
from tests.conftest import Cli, Result


def _checks(result: Result) -> dict[tuple[str, str], dict[str, object]]:
    data = json.loads(result.out)
    assert data["version"] == 1 and data["controller_version"] == __version__
    assert data["exit_code"] == result.code
    return {(c["target"], c["check"]): c for c in data["checks"]}


def test_doctor_names_what_would_stop_a_deploy(cli: Cli, lab: Callable[..., Result],
                                               home: Path) -> None:
    lab("--devices", "2", "--profiles", "lab-pi4-2gb")
    well = cli("doctor", "--json")
    assert well.code == 0, well.err
    checks = _checks(well)
    for device in ("lab-1", "lab-2"):
        for what in ("ssh", "agent", "version", "cert", "clock", "disk"):
            assert checks[(device, what)]["level"] == "ok", checks[(device, what)]
    assert checks[("lab-1", "version")]["detail"].startswith(f"agent {__version__}")
    assert checks[("controller", "database")]["level"] == "ok"
    table = cli("doctor")
    assert table.code == 0 and "nothing stops a deploy" in table.out

    registry = lab_module.read_registry(home / "lab")
    os.kill(registry[1].agent_pid, signal.SIGTERM)  # lab-2's agent goes away, its sshd stays
    known = home / "known_hosts"
    lines = known.read_text().splitlines()
    known.write_text("\n".join(ln for ln in lines if "127.0.0.11" not in ln) + "\n")
    broken = cli("doctor", "--json")
    assert broken.code == 1
    checks = _checks(broken)
    assert checks[("lab-1", "ssh")]["detail"] == "host key unknown"
    assert "fleet device trust lab-1" in str(checks[("lab-1", "ssh")]["fix"])
    assert checks[("lab-1", "agent")]["level"] == "ok"  # gRPC does not need the host key
    assert checks[("lab-1", "cert")]["level"] == "unknown"  # read over SSH: not seen
    assert checks[("lab-2", "ssh")]["level"] == "ok"
    agent = checks[("lab-2", "agent")]
    assert agent["level"] == "problem" and not agent["unreachable"]
    assert agent["fix"].startswith("fleet device rescue lab-2")
    assert checks[("lab-2", "version")]["level"] == "unknown"
    assert "error: 2 problem(s) would stop a deploy; lab-1 ssh: host key unknown" in broken.err

    added = cli("device", "add", "ghost", "--host", "127.0.0.99", "--port", "9", "--agent-port",
                "9", "--group", "far")
    assert added.code == 0, added.err
    away = cli("doctor", "--group", "far", "--json")
    assert away.code == 4, away.err
    checks = _checks(away)
    assert checks[("ghost", "ssh")]["unreachable"] and checks[("ghost", "agent")]["unreachable"]
    assert "could not reach the device" in away.err
    # the other commands that contact devices say "unreachable" with the same exit code
    assert cli("generate", "hi", "--group", "far", "--max-tokens", "2").code == 4
    status = cli("status", "--group", "far", "--wait", "1", "--json")
    assert status.code == 4 and json.loads(status.out)["devices"][0]["state"] == "unreachable"
    assert cli("collect", "--group", "far", "--timeout", "1").code == 4
    assert cli("device", "trust", "ghost").code == 4  # one device, unreachable: 4 as well

    nodriver = cli("--db", "mysql+mysqldb://fleet@db/fleet", "doctor", "--json")
    assert nodriver.code == 1
    checks = _checks(nodriver)
    assert checks[("controller", "database")]["level"] == "problem"
    assert "no driver" in str(checks[("controller", "database")]["detail"])
