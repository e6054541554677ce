"""Which log line a one-line error quotes."""

from __future__ import annotations

import pytest

from controller.core.log_lines import last_error

TRACEBACK = """2026-11-30 04:00:01 INFO edgefleet.agent: starting
Traceback (most recent call last):
  File "/venv/lib/agent/cli.py", line 3, in <module>
    import httptools
ModuleNotFoundError: No module named 'httptools'
"""


@pytest.mark.parametrize(("log", "line"), [
    (TRACEBACK, "ModuleNotFoundError: No module named 'httptools'"),
    ("error: Failed to bind to address 127.0.0.11:5051\nhint: is it free?\n",
     "error: Failed to bind to address 127.0.0.11:5051"),
    ("2026-11-30 04:00:01 INFO x: up\n2026-11-30 04:00:02 ERROR x: store unreadable\n"
     "2026-11-30 04:00:02 INFO x: bye\n", "2026-11-30 04:00:02 ERROR x: store unreadable"),
    ("2026-11-30 04:00:01 INFO x: up\nbroken on purpose\n\n", "broken on purpose"),
    ("", ""),
    ("\n  \n", ""),
    # the newest error wins over an older one from a run before
    ("error: old\nINFO up\nerror: new\n", "error: new"),
    # words that merely contain "error" do not count, nor does the word in a sentence
    ("2026-11-30 INFO x: 0 errors found\nbye\n", "bye"),
    ("2026-11-30 INFO x: retrying after an error in fetch\nbye\n", "bye"),
    ("2026-11-30 04:00:02 CRITICAL x: disk gone\nbye\n",
     "2026-11-30 04:00:02 CRITICAL x: disk gone"),
    ("Error: no such file\n", "Error: no such file"),
])
def test_the_line_quoted(log: str, line: str) -> None:
    assert last_error(log) == line
