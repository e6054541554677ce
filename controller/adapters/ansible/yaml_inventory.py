"""YAML inventories, walked as ansible-core's ``yaml`` plugin walks them: top-level keys are
groups; each group has ``hosts``, ``vars`` and ``children`` (a string is a one-entry
mapping, null is empty); other keys are skipped with a warning; a file with a top-level
``plugin:`` is a plugin configuration, which only Ansible can run (``--via-ansible``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from controller.adapters.ansible.hostpattern import PatternError, expand
from controller.adapters.ansible.model import InventoryBuilder, error
from controller.adapters.ansible.yaml_load import LineDict, load_yaml

_SECTIONS = ("vars", "children", "hosts")


def parse_yaml(text: str, path: Path, builder: InventoryBuilder) -> None:
    data = load_yaml(text, path)
    if not data:
        raise error(f"{path}:1", "empty YAML inventory")
    if not isinstance(data, dict):
        raise error(f"{path}:1", f"a YAML inventory must be a mapping of groups, got "
                                 f"{type(data).__name__}")
    if data.get("plugin"):
        raise error(f"{path}:{_line(data, 'plugin')}",
                    f"inventory plugin configuration (plugin: {data['plugin']}): only Ansible "
                    "can run it; import with --via-ansible")
    for name, group_data in data.items():
        _group(name, group_data, f"{path}:{_line(data, name)}", path, builder)


def _line(data: Any, key: Any) -> int:
    if isinstance(data, LineDict):
        return data.lines.get(key, data.line)
    return 1


def _group(name: Any, data: Any, origin: str, path: Path, builder: InventoryBuilder) -> str:
    if not isinstance(name, str) or not name:
        raise error(origin, f"group name must be text, got {name!r}")
    if data is not None and not isinstance(data, dict):
        builder.warnings.append(f"{origin}: skipped {name!r}: not a valid group definition")
        return name
    builder.add_group(name)
    if data is None:
        return name
    for section in _SECTIONS:
        if isinstance(data.get(section), str):
            data[section] = {data[section]: None}
        if section in data and not isinstance(data[section], (dict, type(None))):
            raise error(f"{path}:{_line(data, section)}",
                        f"'{section}' of group {name!r} must be a mapping, found "
                        f"{type(data[section]).__name__}")
    for key, value in data.items():
        here = f"{path}:{_line(data, key)}"
        if value is None:
            continue
        if not isinstance(value, dict):
            builder.warnings.append(f"{here}: skipped key {key!r} in group {name!r}: not a "
                                    "mapping")
            continue
        if key == "vars":
            for var, var_value in value.items():
                builder.set_var(builder.groups[name], str(var), var_value,
                                f"{path}:{_line(value, var)}")
        elif key == "children":
            for child, child_data in value.items():
                child_origin = f"{path}:{_line(value, child)}"
                child = _group(child, child_data, child_origin, path, builder)
                if child not in builder.groups:
                    raise error(child_origin, f"{child!r} is not a known host nor group")
                builder.add_child(name, child, child_origin)
        elif key == "hosts":
            for pattern, host_vars in value.items():
                _hosts(name, pattern, host_vars, f"{path}:{_line(value, pattern)}", path,
                       builder)
        else:
            builder.warnings.append(f"{here}: skipped unexpected key {key!r} in group "
                                    f"{name!r} (only vars, children and hosts are valid)")
    return name


def _hosts(group: str, pattern: Any, host_vars: Any, origin: str, path: Path,
           builder: InventoryBuilder) -> None:
    if not isinstance(pattern, str):
        raise error(origin, f"host pattern {pattern!r} must be text: quote numbers")
    try:
        names, port = expand(pattern)
    except PatternError as exc:
        raise error(origin, str(exc)) from exc
    host_vars = host_vars or {}
    if not isinstance(host_vars, dict):
        raise error(origin, f"variables of host {pattern!r} must be a mapping, got "
                            f"{type(host_vars).__name__}")
    for host_name in names:
        host = builder.add_host(host_name, group, port, origin)
        for key, value in host_vars.items():
            builder.set_var(host, str(key), value, f"{path}:{_line(host_vars, key)}")
