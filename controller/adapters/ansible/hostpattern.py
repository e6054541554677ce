"""Ansible host patterns: ``name[:port]``, ``[v6]:port`` and ranges (``[01:20]``, ``[a:c]``,
``[1:10:2]``, several in one name), expanded as ansible-core's ``parse_address`` and
``expand_hostname_range`` do."""

from __future__ import annotations

import re
import string

_RANGE = r"\[(?:[a-z]:[a-z]|[0-9]+:[0-9]+)(?::[0-9]+)?\]"
_HEX_RANGE = r"\[(?:[0-9a-f]+:[0-9a-f]+)(?::[0-9]+)?\]"
_NUM_RANGE = r"\[(?:[0-9]+:[0-9]+)(?::[0-9]+)?\]"
_V6 = rf"(?:[0-9a-f]{{1,4}}|{_HEX_RANGE})"
_V4 = rf"(?:[01]?[0-9]{{1,2}}|2[0-4][0-9]|25[0-5]|{_NUM_RANGE})"
_LABEL = rf"(?:[\w]|{_RANGE})(?:[\w_-]|{_RANGE})*(?<![_-])"

BRACKETED_PORT = re.compile(r"^\[(.+)\]:([0-9]+)$")
HOST_PORT = re.compile(r"^((?:[^:\[\]]|\[[^\]]*\])*):([0-9]+)$")
IPV4 = re.compile(rf"^(?:{_V4}\.){{3}}{_V4}$", re.I)
IPV6 = re.compile(
    rf"""^((?:{_V6}:){{7}}{_V6}|(?:{_V6}:){{1,6}}:|(?:{_V6}:)(?::{_V6}){{1,6}}|
    (?:{_V6}:){{2}}(?::{_V6}){{1,5}}|(?:{_V6}:){{3}}(?::{_V6}){{1,4}}|
    (?:{_V6}:){{4}}(?::{_V6}){{1,3}}|(?:{_V6}:){{5}}(?::{_V6}){{1,2}}|
    (?:{_V6}:){{6}}(?::{_V6})|:(?::{_V6}){{1,6}}|{_V6}?::|
    (?:0:){{6}}(?:{_V6}\.){{3}}{_V6}|::(?:ffff:)?(?:{_V6}\.){{3}}{_V6}|
    (?:0:){{5}}ffff:(?:{_V6}\.){{3}}{_V6})$""", re.X | re.I)
HOSTNAME = re.compile(rf"^{_LABEL}(?:\.{_LABEL})*$", re.I | re.UNICODE)


class PatternError(ValueError):
    """A host pattern Ansible would refuse (its own words)."""


def split_port(pattern: str) -> tuple[str, int | None, bool]:
    """``(host, port, recognised)``: what Ansible's ``parse_address`` makes of it; a
    pattern it does not recognise is kept whole, with no port, as Ansible keeps it."""
    address, port = pattern, None
    for regex in (BRACKETED_PORT, HOST_PORT):
        m = regex.match(address)
        if m:
            address, port = m.group(1), int(m.group(2))
    if IPV4.match(address) or IPV6.match(address) or HOSTNAME.match(address):
        return address, port, True
    return pattern, None, False


def expand(pattern: str) -> tuple[list[str], int | None]:
    """Host names and port of one INI/YAML host entry.

    Raises:
        PatternError: a malformed range, or a trailing ':' with no port.
    """
    host, port, _ = split_port(pattern)
    if pattern.strip().endswith(":") and port is None:
        raise PatternError(f"invalid host pattern {pattern!r}: ending in ':' is reserved for "
                           "a port")
    names = _expand_ranges(host) if "[" in host else [host]
    if any(n.strip() == "---" for n in names):
        raise PatternError(f"invalid host pattern {pattern!r}: '---' is a sign this is YAML")
    return names, port


def _expand_ranges(line: str) -> list[str]:
    parts = line.replace("[", "|", 1).replace("]", "|", 1).split("|")
    if len(parts) != 3:
        raise PatternError(f"unbalanced brackets in host pattern {line!r}")
    head, nrange, tail = parts
    bounds = nrange.split(":")
    if len(bounds) not in (2, 3):
        raise PatternError(f"host range must be begin:end or begin:end:step in {line!r}")
    beg, end = bounds[0] or "0", bounds[1]
    step_text = bounds[2] if len(bounds) == 3 else "1"
    if not end:
        raise PatternError(f"host range must specify end value in {line!r}")
    width = 0
    if beg[0] == "0" and len(beg) > 1:
        width = len(beg)
        if width != len(end):
            raise PatternError(f"host range must have equal-length begin and end in {line!r}")
    try:
        step = int(step_text)
        if beg in string.ascii_letters and end in string.ascii_letters:
            i_beg, i_end = string.ascii_letters.index(beg), string.ascii_letters.index(end)
            if i_beg > i_end:
                raise PatternError(f"host range must have begin <= end in {line!r}")
            seq: list[str] = list(string.ascii_letters[i_beg:i_end + 1:step])
        else:
            seq = [str(i).zfill(width) for i in range(int(beg), int(end) + 1, step)]
    except ValueError as exc:
        if isinstance(exc, PatternError):
            raise
        raise PatternError(f"bad host range [{nrange}] in {line!r}") from exc
    out: list[str] = []
    for item in seq:
        name = f"{head}{item}{tail}"
        out.extend(_expand_ranges(name) if "[" in name else [name])
    return out
