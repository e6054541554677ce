"""What enrollment writes on a device to start the agent: ``run-agent.sh``, a systemd user
unit, an ``@reboot`` crontab line (pure). Every value is quoted for the language it lands in,
so nothing an inventory or a device record holds can run as a command.

- sh: ``shlex.quote`` (single quotes; a single quote inside is closed, escaped and reopened).
- systemd: ``ExecStart=`` takes C-style double-quoted words, expands ``%`` specifiers and
  ``$VAR``; a word is double-quoted with ``\\`` and ``"`` escaped, ``%`` doubled and ``$``
  doubled (systemd.service(5), systemd.unit(5) "Specifiers").
- cron: the command goes to ``/bin/sh`` after cron turns every unescaped ``%`` into a newline
  (crontab(5)), so it is sh-quoted and then each ``%`` escaped.

A value with a newline or another control character is refused before any of it: no quoting
makes a newline safe in a unit file or a crontab. The agent's directory is held to a narrower
set (letters, digits, space and ``._/+@,=:~%'-``), because other tools write it into their own
scripts: pip's entry-point launcher for a venv whose path has a space puts the path in double
quotes, where ``$(...)`` and backquotes still run (seen: enrolling into a directory named
with ``$(touch ...)`` ran it at every agent start).
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Sequence
from dataclasses import dataclass

from controller.errors import UsageError

UNIT = "edgefleet-agent.service"
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_SAFE_PATH = re.compile(r"/[A-Za-z0-9 ._/+@,=:~%'-]*")


def _plain(value: str, what: str) -> str:
    if _CONTROL.search(value):
        raise UsageError(f"{what} {value!r} holds a control character",
                         hint="fix the device's record: fleet device remove NAME, then add it "
                         "again")
    return value


def sh_quote(value: str, what: str = "value") -> str:
    return shlex.quote(_plain(value, what))


def systemd_quote(value: str, what: str = "value") -> str:
    text = _plain(value, what).replace("\\", "\\\\").replace('"', '\\"')
    return '"' + text.replace("%", "%%").replace("$", "$$") + '"'


def is_agent_process(pid: str) -> str:
    """A shell test that process ``pid`` (a shell word such as ``$p``) is the agent
    ``run-agent.sh`` started (the script itself or the ``fleet-agent`` it execs): a gone,
    zombie or reused pid fails it."""
    return (f"tr '\\0' ' ' < /proc/{pid}/cmdline 2>/dev/null "
            "| grep -q -e fleet-agent -e run-agent")


def cron_command(words: Sequence[str]) -> str:
    return " ".join(sh_quote(w) for w in words).replace("%", "\\%")


@dataclass(frozen=True)
class AgentLaunch:
    """How the agent runs on a device: its base directory and ``fleet-agent serve`` flags."""

    base: str  # the agent's directory on the device (venv/, tls/, data/, agent.log)
    listen: str = ""
    emulate: str = ""

    def __post_init__(self) -> None:
        for what, value in (("directory", self.base), ("--listen", self.listen),
                            ("--emulate", self.emulate)):
            _plain(value, what)
        if not _SAFE_PATH.fullmatch(self.base):
            raise UsageError(f"the agent's directory {self.base!r} is not an absolute path of "
                             "letters, digits, space and ._/+@,=:~%'- (tools on the device, "
                             "pip's launchers among them, would run parts of it)",
                             hint="set the device's data directory elsewhere (its record's "
                             "data_dir, or the SSH user's home)")

    @property
    def script_path(self) -> str:
        return f"{self.base}/run-agent.sh"

    def run_script(self) -> str:
        """``run-agent.sh``: the agent in the foreground, its output appended to the log."""
        b = self.base
        words = [f"{b}/venv/bin/fleet-agent", "serve", "--listen", self.listen,
                 "--data-dir", f"{b}/data", "--tls-dir", f"{b}/tls"]
        if self.emulate:
            words += ["--emulate", self.emulate]
        command = " ".join(sh_quote(w) for w in words)
        return ("#!/bin/sh\n# written by fleet device enroll\n"
                f"exec {command} >> {sh_quote(f'{b}/agent.log')} 2>&1\n")

    def systemd_unit(self) -> str:
        return ("[Unit]\nDescription=edgefleet device agent\nAfter=network-online.target\n\n"
                f"[Service]\nExecStart={systemd_quote(self.script_path)}\nRestart=always\n"
                "RestartSec=3\n\n[Install]\nWantedBy=default.target\n")

    def crontab_line(self) -> str:
        return f"@reboot {cron_command([self.script_path])}"
