"""The line of a program's log that says why it stopped, for a one-line error to quote."""

from __future__ import annotations

import re

# "error: ...", "ModuleNotFoundError: ...", "grpc._channel.X: ...", "... ERROR logger: ..."
_ERROR = re.compile(r"^(error:|[\w.]*(Error|Exception)\b)|\sERROR\s", re.IGNORECASE)


def last_error(text: str) -> str:
    """The last line that reads as an error, else the last line that is not empty ('' when
    there is none). A Python traceback ends with its exception's line, which is the one
    taken; a program that exits with a bare message (``SystemExit("...")``) leaves that
    message last."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    errors = [line for line in lines if _ERROR.search(line)]
    return (errors or lines or [""])[-1]
