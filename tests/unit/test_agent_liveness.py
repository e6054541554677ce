"""How enrollment and upgrades tell an agent that exited from one still starting (the
decision; the SSH side runs for real in tests/e2e/test_enroll.py and test_agent_upgrade.py,
with pid files: this machine has no systemd user session)."""

from __future__ import annotations

from typing import Any

import pytest

from controller.adapters.remote import Ran
from controller.services import agent_liveness

LOG = "INFO starting\nTraceback (most recent call last):\nImportError: libgomp.so.1\n"


class ScriptedRemote:
    """Answers each command by the first key it contains."""

    def __init__(self, answers: dict[str, Ran]) -> None:
        self.answers = answers
        self.ran: list[str] = []

    def run(self, command: str, timeout_s: float = 120.0) -> Ran:
        self.ran.append(command)
        return next(r for key, r in self.answers.items() if key in command)


def _exited(how: str, **answers: Ran) -> tuple[str, list[str]]:
    remote: Any = ScriptedRemote({"NRestarts": answers.get("restarts", Ran(0, "", "")),
                                  "kill -0": answers.get("alive", Ran(0, "", "")),
                                  "tail": answers.get("log", Ran(0, LOG, ""))})
    return agent_liveness.exited(remote, "/home/pi/agent", how), remote.ran


def test_a_running_pidfile_agent_is_not_asked_for_its_log() -> None:
    why, ran = _exited("pidfile", alive=Ran(0, "", ""))
    assert why == "" and not any("tail" in c for c in ran)


def test_a_gone_pidfile_agent_is_named_with_its_error() -> None:
    why, _ = _exited("pidfile", alive=Ran(1, "", "kill: No such process"))
    assert why == "the agent exited: ImportError: libgomp.so.1"


def test_an_empty_log_says_so() -> None:
    why, _ = _exited("pidfile", alive=Ran(1, "", ""), log=Ran(0, "", ""))
    assert why == "the agent exited (its log is empty)"


@pytest.mark.parametrize(("restarts", "gone"), [("0", False), ("1", False), ("2", True),
                                                 ("7", True), ("", False), ("[not set]", False)])
def test_under_systemd_a_second_restart_is_a_crash_loop(restarts: str, gone: bool) -> None:
    why, _ = _exited("systemd-user", restarts=Ran(0, restarts + "\n", ""))
    assert bool(why) is gone
    if gone:
        assert why == (f"the agent exited and was restarted {restarts} times: "
                       "ImportError: libgomp.so.1")
