"""Ansible inventories read as ansible-core reads them, without needing Ansible.

    read_inventory(path)        file or directory -> ParsedInventory (our own reader)
    ├── ini.parse_ini           INI, as the ``ini`` plugin
    ├── yaml_inventory          YAML / JSON, as the ``yaml`` plugin
    ├── vars_files.FolderVars   group_vars/ and host_vars/ beside the inventory
    └── model                   building the groups and merging variables by precedence
    via_ansible.run_ansible     ``ansible-inventory --list`` -> the same ParsedInventory
    mapping.map_hosts           ParsedInventory -> devices, labels, what was ignored

Errors are ``InvalidData`` naming ``file:line``; nothing is imported unless all of it reads.
"""

from __future__ import annotations

import copy
import os
import re
from pathlib import Path

from controller.adapters.ansible.ini import parse_ini
from controller.adapters.ansible.model import (
    Group,
    Host,
    InventoryBuilder,
    ParsedInventory,
    error,
)
from controller.adapters.ansible.vars_files import FolderVars
from controller.adapters.ansible.yaml_inventory import parse_yaml
from controller.errors import FleetError, InvalidData

__all__ = ["ParsedInventory", "read_inventory"]

_YAML_EXTENSIONS = ("", ".yml", ".yaml", ".json")
# ansible-core skips these in an inventory directory (IGNORED_ALWAYS + INVENTORY_IGNORE_EXTS)
_IGNORED = re.compile(r"^\.|^host_vars$|^group_vars$|^vars_plugins$|"
                      r"(\.pyc|\.pyo|\.swp|\.bak|~|\.rpm|\.md|\.txt|\.rst|\.orig|\.cfg|\.retry)$")


def read_inventory(path: Path) -> ParsedInventory:
    """Read an inventory file, or a directory of them, with its group_vars/ and host_vars/.

    Raises:
        InvalidData: the file cannot be read, or a line of it is not valid Ansible (or is
            something only Ansible can evaluate), naming file and line.
    """
    if not path.exists():
        raise InvalidData(f"cannot read {path}: no such file or directory",
                          hint="give the path of an Ansible inventory file or directory")
    builder = InventoryBuilder()
    if path.is_dir():
        _read_dir(path, builder)
        base = path
    else:
        _read_file(path, builder)
        base = path.parent
    return builder.result(str(path), FolderVars(base))


def _read_dir(path: Path, builder: InventoryBuilder) -> None:
    for entry in sorted(path.iterdir(), key=lambda p: p.name):
        if _IGNORED.search(entry.name):
            continue
        if entry.is_dir():
            _read_dir(entry, builder)
        else:
            _read_file(entry, builder)


def _read_file(path: Path, builder: InventoryBuilder) -> None:
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise InvalidData(f"cannot read {path}: {exc.strerror}",
                          hint="give the path of an Ansible inventory file") from exc
    if os.access(path, os.X_OK):
        raise error(f"{path}:1", "executable inventory script: only Ansible runs it; "
                                 "import with --via-ansible")
    if path.suffix == ".toml":
        raise error(f"{path}:1", "TOML inventory: import with --via-ansible")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[:exc.start].count(b"\n") + 1
        raise error(f"{path}:{line}", "not UTF-8 text") from exc
    # Ansible tries its yaml plugin (for these extensions) and then its ini plugin; the
    # first that reads the file wins
    if path.suffix not in _YAML_EXTENSIONS:
        parse_ini(text, path, builder)
        return
    attempt = InventoryBuilder()
    attempt.groups, attempt.hosts = _copy(builder)
    try:
        parse_yaml(text, path, attempt)
    except FleetError as yaml_error:
        if path.suffix:  # .yml/.yaml/.json: report the YAML error, unless it is INI
            try:
                parse_ini(text, path, builder)
            except FleetError:
                raise yaml_error from None
            return
        try:
            parse_ini(text, path, builder)
        except FleetError as ini_error:
            raise (ini_error if _looks_ini(text) else yaml_error) from None
        return
    builder.groups, builder.hosts = attempt.groups, attempt.hosts
    builder.warnings.extend(attempt.warnings)


def _copy(builder: InventoryBuilder) -> tuple[dict[str, Group], dict[str, Host]]:
    """What the builder holds so far, for a parse attempt that may be thrown away."""
    return copy.deepcopy(builder.groups), copy.deepcopy(builder.hosts)


def _looks_ini(text: str) -> bool:
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith(("#", ";")):
            return line.startswith("[") or ":" not in line.split()[0]
    return False
