"""The line of a program's log that says why it stopped, for a one-line error to quote."""

from __future__ import annotations

import re

# "error: ..." (any case), "ModuleNotFoundError: ...", "grpc._channel.X: ...", and a logging
# line of level ERROR or CRITICAL (in capitals: "an error in ..." is not one)
_ERROR = re.compile(r"^((?i:error:)|[\w.]*(Error|Exception)\b)|\s(ERROR|CRITICAL)\s")


def last_error(text: str) -> str:
    """The last line that reads as an error, else the last line that is not empty ('' when
    there is none). A Python traceback ends with its exception's line, which is the one
    taken; a program that exits with a bare message (``SystemExit("...")``) leaves that
    message last."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    errors = [line for line in lines if _ERROR.search(line)]
    return (errors or lines or [""])[-1]
