"""An old agent in the field: lab devices enrolled (real sshd, their own venvs) with the agent
built from an earlier commit (before GetVersion, AbortTrial and trial deadlines). The deploy
names the upgrade before sending a byte; `fleet device upgrade` puts this checkout's agent on
them, canary first, keeping store and certificates; the model then deploys. A new agent that
does not come up is backed out: the canary goes back to the agent it ran, the other device is
never touched."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from agent import __version__
from tests.conftest import Cli, Result

ROOT = Path(__file__).resolve().parents[2]
OLD_COMMIT = "3da7b10"  # the agent as of edgefleet 0.1.0's last rollout code: no GetVersion


def _build(source: Path, out: Path) -> Path:
    done = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps",
                           "--no-build-isolation", "-q", "-w", str(out), str(source)],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    (wheel,) = out.glob("edgefleet-*.whl")
    return wheel


def _old_wheel(tmp: Path) -> Path:
    if shutil.which("git") is None or subprocess.run(
            ["git", "-C", str(ROOT), "cat-file", "-e", f"{OLD_COMMIT}^{{commit}}"],
            capture_output=True).returncode != 0:
        pytest.skip(f"needs the repository history (commit {OLD_COMMIT})")
    source = tmp / "old-src"
    source.mkdir()
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", OLD_COMMIT],
                             capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(source)], input=archive, check=True)
    return _build(source, tmp / "old-wheel")


def _broken_wheel(tmp: Path) -> Path:
    """This checkout as a newer version whose agent exits at start."""
    source = tmp / "broken-src"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    for name in ("agent", "controller", "profiles"):
        shutil.copytree(ROOT / name, source / name,
                        ignore=shutil.ignore_patterns("__pycache__"))
    init = source / "agent" / "__init__.py"
    init.write_text(init.read_text().replace(f'"{__version__}"', '"99.0.0"'))
    cli = source / "agent" / "cli.py"
    cli.write_text(cli.read_text().replace("def _serve(args: argparse.Namespace) -> int:\n",
                                           "def _serve(args: argparse.Namespace) -> int:\n"
                                           "    raise SystemExit('broken on purpose')\n"))
    return _build(source, tmp / "broken-wheel")


def _json(result: Result) -> dict:  # type: ignore[type-arg]
    data = json.loads(result.out)
    assert isinstance(data, dict)
    return data


def test_old_agents_are_named_upgraded_in_place_then_deployed_to(
        cli: Cli, lab: Callable[..., Result], home: Path, tmp_path: Path) -> None:
    old = _old_wheel(tmp_path)
    assert old.name == "edgefleet-0.1.0-py3-none-any.whl"
    lab("--devices", "2", "--profiles", "lab-pi5-8gb", "--sshd-only")
    for name in ("lab-1", "lab-2"):
        enrolled = cli("device", "enroll", name, "--wheel", str(old), "--timeout", "180")
        assert enrolled.code == 0, enrolled.err
        assert "agent 0.1.0 running" in enrolled.out

    refused = cli("deploy", "tiny-llama", "--group", "lab", "--json")
    assert refused.code == 1
    outcomes = {o["device"]: o for o in _json(refused)["outcomes"]}
    for name, o in outcomes.items():
        assert o["status"] == "failed" and not o["model_failed"]
        assert o["bytes_sent"] == 0
        assert "lacks abort-trial, bound-manifest, error-kinds, trial-deadline" in o["reason"]
        assert f"fleet device upgrade {name}" in o["hint"]
    assert "fleet device upgrade lab-1" in refused.err  # the error's hint names the fix
    doctor = cli("doctor", "--json")
    assert doctor.code == 1
    checks = {(c["target"], c["check"]): c for c in _json(doctor)["checks"]}
    assert checks[("lab-1", "version")]["level"] == "problem"
    assert checks[("lab-1", "version")]["fix"] == "fleet device upgrade lab-1"
    assert checks[("lab-2", "clock")]["level"] == "unknown"  # an old agent does not tell

    base = home / "lab" / "devices" / "lab-1"
    cert = (base / "tls" / "agent.crt").read_bytes()
    upgraded = cli("device", "upgrade", "--group", "lab", "--json")
    assert upgraded.code == 0, upgraded.err
    report = _json(upgraded)
    assert report["version"] == 1 and report["wheel"]["version"] == __version__
    assert [(d["device"], d["status"], d["before"], d["after"]) for d in report["devices"]] == [
        ("lab-1", "upgraded", "", __version__), ("lab-2", "upgraded", "", __version__)]
    assert (base / "tls" / "agent.crt").read_bytes() == cert  # certificates kept
    previous = (base / "wheels" / "previous").read_text().strip()
    assert previous.endswith("edgefleet-0.1.0-py3-none-any.whl")  # the way back is kept
    assert (base / "wheels" / previous).is_file()

    assert cli("doctor").code == 0  # nothing stops a deploy now
    again = cli("device", "upgrade", "lab-1")  # nothing to do the second time
    assert again.code == 0 and "unchanged" in again.out, again.out

    deployed = cli("deploy", "tiny-llama", "--group", "lab", "--json")
    assert deployed.code == 0, deployed.err
    assert {o["status"] for o in _json(deployed)["outcomes"]} == {"committed"}

    # a new agent that never comes up: the canary goes back, the other device is left alone
    broken = _broken_wheel(tmp_path)
    backed = cli("device", "upgrade", "--group", "lab", "--wheel", str(broken),
                 "--timeout", "20", "--json")
    assert backed.code == 1, backed.err
    first, second = _json(backed)["devices"]
    assert first["status"] == "reverted" and first["after"] == __version__
    # seen exiting, with its own words, not waited for until the timeout
    assert "did not come up healthy (the agent exited: broken on purpose)" in first["reason"]
    assert second["status"] == "halted" and second["before"] == ""
    gen = cli("generate", "hi", "--group", "lab", "--max-tokens", "2", "--json")
    assert gen.code == 0, gen.err  # both serve the model: the canary's store was kept
    assert all(r["completion_tokens"] > 0 for r in _json(gen)["results"])
    status = cli("device", "upgrade", "lab-1", "--json")
    assert _json(status)["devices"][0]["status"] == "unchanged"  # runs the good agent again
