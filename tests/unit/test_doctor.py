"""The pure judgements of `fleet doctor` (controller.core.doctor), case by case."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from agent.contract import AGENT_CAPABILITIES, Capability
from controller.core import doctor
from controller.core.compat import AgentVersion
from controller.core.doctor import Check

NOW = datetime(2030, 1, 1, tzinfo=timezone.utc)
FULL = frozenset(c.value for c in AGENT_CAPABILITIES)


@pytest.mark.parametrize(("days", "level"), [(-1, "problem"), (0.5, "problem"), (6, "problem"),
                                             (20, "warn"), (31, "ok"), (700, "ok")])
def test_certificate_levels(days: float, level: str) -> None:
    check = doctor.cert_check("d", "cert", NOW + timedelta(days=days), NOW, "re-enroll")
    assert check.level == level
    assert (check.fix == "re-enroll") is (level != "ok")


def test_a_missing_certificate_is_unknown_not_fine() -> None:
    assert doctor.cert_check("d", "cert", None, NOW, "fix").level == "unknown"


@pytest.mark.parametrize(("agent", "level", "says"), [
    (AgentVersion("0.2.0", 2, FULL, 0.1), "ok", "agent 0.2.0"),
    (AgentVersion("0.1.9", 2, FULL, 0.1), "warn", "agent 0.1.9, controller 0.2.0"),
    (AgentVersion("0.2.0", 2, FULL - {Capability.BENCHMARK.value}, 0.1), "warn", "benchmark"),
    (AgentVersion("0.2.0", 2, FULL - {Capability.ABORT_TRIAL.value}, 0.1), "problem",
     "lacks abort-trial (deploys refused)"),
    (AgentVersion(), "problem", "no GetVersion"),
])
def test_version_against_the_controller(agent: AgentVersion, level: str, says: str) -> None:
    version, _ = doctor.version_checks("d", agent, "0.2.0")
    assert version.level == level and says in version.detail
    assert (version.fix == "fleet device upgrade d") is (level != "ok")


@pytest.mark.parametrize(("skew", "level"), [(None, "unknown"), (0.3, "ok"), (-29.0, "ok"),
                                             (31.0, "problem"), (-3600.0, "problem")])
def test_clock_skew(skew: float | None, level: str) -> None:
    _, clock = doctor.version_checks("d", AgentVersion("0.2.0", 2, FULL, skew), "0.2.0")
    assert clock.level == level
    if level == "problem":
        assert ("behind" if skew and skew < 0 else "ahead") in clock.detail
        assert "timedatectl set-ntp true" in clock.fix


@pytest.mark.parametrize(("free", "level"), [(None, "unknown"), (10 << 20, "problem"),
                                             (500 << 20, "warn"), (5 << 30, "ok")])
def test_disk(free: int | None, level: str) -> None:
    assert doctor.disk_check("d", free, "at the store", "free some").level == level


def test_exit_code_tells_unreachable_from_failed() -> None:
    ok = Check("d", "ssh", "ok", "")
    away = Check("d", "ssh", "problem", "timed out", unreachable=True)
    broken = Check("e", "agent", "problem", "down")
    warn = Check("e", "disk", "warn", "low")
    assert doctor.exit_code([ok, warn]) == 0
    assert doctor.exit_code([ok, away]) == 4
    assert doctor.exit_code([away, broken]) == 1
