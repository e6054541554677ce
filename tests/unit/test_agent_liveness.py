"""How enrollment and upgrades tell an agent that exited from one still starting (the
decision; the SSH side runs for real in tests/e2e/test_enroll.py and test_agent_upgrade.py,
with pid files: this machine has no systemd user session)."""

from __future__ import annotations

from typing import Any

import pytest

from controller.adapters.remote import Ran
from controller.errors import Unreachable
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


def _exited(how: str, log_from: int = 0, **answers: Ran) -> tuple[str, list[str]]:
    remote: Any = ScriptedRemote({"NRestarts": answers.get("restarts", Ran(0, "", "")),
                                  "cmdline": answers.get("alive", Ran(0, "", "")),
                                  "tail": answers.get("log", Ran(0, LOG, ""))})
    return agent_liveness.exited(remote, "/home/pi/agent", how, log_from), remote.ran


def test_a_running_pidfile_agent_is_not_asked_for_its_log() -> None:
    why, ran = _exited("pidfile", alive=Ran(0, "", ""))
    assert why == "" and not any("tail" in c for c in ran)


def test_a_gone_pidfile_agent_is_named_with_its_error() -> None:
    why, _ = _exited("pidfile", alive=Ran(1, "", "kill: No such process"))
    assert why == "the agent exited: ImportError: libgomp.so.1"


def test_an_empty_log_says_so() -> None:
    why, _ = _exited("pidfile", alive=Ran(1, "", ""), log=Ran(0, "", ""))
    assert why == "the agent exited without writing to its log"


@pytest.mark.parametrize(("restarts", "gone"), [("0", False), ("1", False), ("2", True),
                                                 ("7", True), ("", False), ("[not set]", False)])
def test_under_systemd_a_second_restart_is_a_crash_loop(restarts: str, gone: bool) -> None:
    why, _ = _exited("systemd-user", restarts=Ran(0, restarts + "\n", ""))
    assert bool(why) is gone
    if gone:
        assert why == (f"the agent exited and was restarted {restarts} times: "
                       "ImportError: libgomp.so.1")


def test_only_what_this_run_logged_is_read() -> None:
    why, ran = _exited("pidfile", log_from=5120, alive=Ran(1, "", ""))
    assert why.startswith("the agent exited: ")
    assert any("tail -c +5121 /home/pi/agent/agent.log" in c for c in ran), ran


class Unanswered:
    def run(self, command: str, timeout_s: float = 120.0) -> Ran:
        raise Unreachable("kiosk-1: SSH command failed (timed out)")


def test_what_ssh_cannot_tell_now_counts_as_still_starting() -> None:
    assert agent_liveness.exited(Unanswered(), "/b", "pidfile") == ""
    assert agent_liveness.exited(Unanswered(), "/b", "systemd-user") == ""
    assert agent_liveness.log_size(Unanswered(), "/b") == 0


@pytest.mark.parametrize(("out", "size"), [("5120\n", 5120), ("0\n", 0), ("", 0), ("x", 0)])
def test_the_log_size_before_a_start(out: str, size: int) -> None:
    remote: Any = ScriptedRemote({"stat": Ran(0, out, "")})
    assert agent_liveness.log_size(remote, "/b") == size


def test_a_watch_asks_the_device_at_most_every_two_seconds(
        monkeypatch: pytest.MonkeyPatch) -> None:
    now = [100.0]
    monkeypatch.setattr(agent_liveness.time, "monotonic", lambda: now[0])
    remote = ScriptedRemote({"cmdline": Ran(1, "", ""), "tail": Ran(0, LOG, "")})
    watch = agent_liveness.Watch(remote, "/b", "pidfile", 0)  # type: ignore[arg-type]
    assert watch.exited() == "" and remote.ran == []  # just started: not asked yet
    now[0] += agent_liveness.ASK_EVERY_S
    assert watch.exited() == "the agent exited: ImportError: libgomp.so.1"
    asked = len(remote.ran)
    now[0] += 0.5
    assert watch.exited() == "" and len(remote.ran) == asked  # not due again
