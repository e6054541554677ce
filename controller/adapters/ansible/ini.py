"""INI inventories, read line by line as ansible-core's ``ini`` plugin reads them.

Sections ``[g]``, ``[g:children]``, ``[g:vars]`` (a trailing ``# comment`` allowed); host
lines split like a shell (``shlex``, comments dropped) into a pattern and ``key=value``
pairs; ``:vars`` lines split at the first ``=`` with spaces trimmed. Every value is read as
a Python literal where it is one (``5``, ``True``, ``[1, 2]``, ``'quoted'``), else kept as
text, exactly as Ansible does. A ``:vars`` or ``:children`` section naming a group that is
never declared is an error, as in Ansible.
"""

from __future__ import annotations

import ast
import re
import shlex
import warnings
from pathlib import Path
from typing import Any

from controller.adapters.ansible.hostpattern import PatternError, expand
from controller.adapters.ansible.model import InventoryBuilder, error

_SECTION = re.compile(r"^\[([^:\]\s]+)(?::(\w+))?\]\s*(?:#.*)?$")
_GROUP_NAME = re.compile(r"^([^:\]\s]+)\s*(?:#.*)?$")


def literal(text: str) -> Any:
    """Ansible's ``_parse_value``: a Python literal where the text is one, else the text."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", SyntaxWarning)
            value = ast.literal_eval(text)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return text
    if value is ... or isinstance(value, complex):
        return text if value is ... else str(value)
    if isinstance(value, bytes):
        return value.decode("utf-8", "surrogateescape")
    if isinstance(value, (tuple, set)):
        return list(value)
    return value


def parse_ini(text: str, path: Path, builder: InventoryBuilder) -> None:
    pending: dict[str, dict[str, Any]] = {}
    group, state = "ungrouped", "hosts"
    for number, raw in enumerate(text.splitlines(), start=1):
        origin = f"{path}:{number}"
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        m = _SECTION.match(line)
        if m:
            group, state = m.group(1), m.group(2) or "hosts"
            if state not in ("hosts", "children", "vars"):
                raise error(origin, f"section [{group}:{state}] has unknown type: {state}")
            if group not in builder.groups:
                if state == "vars" and group not in pending:
                    pending[group] = {"line": origin, "state": "vars", "parents": []}
                builder.add_group(group)
            if group in pending and state != "vars":
                if pending[group]["state"] == "children":
                    _resolve_pending(group, pending, builder)
                else:
                    del pending[group]
            continue
        if line.startswith("[") and line.endswith("]"):
            raise error(origin, f"invalid section entry {line!r}: no spaces or other invalid "
                                "characters are allowed in a section name")
        if state == "hosts":
            _host_line(line, origin, group, builder)
        elif state == "vars":
            key, sep, value = line.partition("=")
            if not sep:
                raise error(origin, f"expected key=value, got {line!r}")
            builder.set_var(builder.groups[group], key.strip(), literal(value.strip()), origin)
        else:
            gm = _GROUP_NAME.match(line)
            if not gm:
                raise error(origin, f"expected a group name, got {line!r}")
            child = gm.group(1)
            if child in builder.groups:
                builder.add_child(group, child, origin)
            elif child in pending:
                pending[child]["parents"].append(group)
            else:
                pending[child] = {"line": origin, "state": "children", "parents": [group]}
    for name, declaration in pending.items():
        if declaration["state"] == "vars":
            raise error(declaration["line"], f"section [{name}:vars] is for a group that is "
                                             "not defined anywhere in the file")
        raise error(declaration["line"], f"section [{declaration['parents'][-1]}:children] "
                                         f"includes undefined group {name!r}")


def _resolve_pending(group: str, pending: dict[str, dict[str, Any]],
                     builder: InventoryBuilder) -> None:
    for parent in pending[group]["parents"]:
        builder.add_child(parent, group, pending[group]["line"])
        if parent in pending and pending[parent]["state"] == "children":
            _resolve_pending(parent, pending, builder)
    del pending[group]


def _host_line(line: str, origin: str, group: str, builder: InventoryBuilder) -> None:
    try:
        tokens = shlex.split(line, comments=True)
    except ValueError as exc:
        raise error(origin, f"cannot split host line ({exc})") from exc
    if not tokens:
        return
    try:
        names, port = expand(tokens[0])
    except PatternError as exc:
        raise error(origin, str(exc)) from exc
    variables: dict[str, Any] = {}
    for token in tokens[1:]:
        key, sep, value = token.partition("=")
        if not sep:
            raise error(origin, f"expected key=value host variable, got {token!r}")
        variables[key] = literal(value)
    for name in names:
        host = builder.add_host(name, group, port, origin)
        for key, value in variables.items():
            builder.set_var(host, key, value, origin)
