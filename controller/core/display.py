"""Text from devices, made safe to show on an operator's terminal (pure).

An agent's error message, a model name it reports, a reason it gives: any of it may carry
terminal control sequences (``ESC ] 0 ; title BEL`` retitles the window, others move the
cursor, rewrite lines or, on some terminals, answer back) or Rich markup (``[red]``,
``[link=…]``). ``terminal_safe`` drops every control character and escape sequence (keeping
newlines and tabs where asked); the CLI and the dashboard also escape markup where they
render text with Rich (``controller.cli.render.esc``)."""

from __future__ import annotations

import re

# CSI (ESC [ ... final), OSC (ESC ] ... BEL or ESC \), other ESC sequences, then any C0 / C1
# control character (DEL included).
_ESCAPES = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?"
                      r"|\x1b[PX^_][^\x1b]*(?:\x1b\\)?|\x1b.?|\x9b[0-?]*[ -/]*[@-~]"
                      r"|\x9d[^\x07\x9c]*[\x07\x9c]?")
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")  # all but tab and newline


def terminal_safe(text: str, keep_newlines: bool = False) -> str:
    """``text`` without escape sequences and control characters (newlines and tabs kept
    when ``keep_newlines``, else each becomes a space)."""
    text = _CONTROL.sub("", _ESCAPES.sub("", text))
    return text if keep_newlines else text.replace("\n", " ").replace("\t", " ")
