"""Ansible itself as the reader: ``ansible-inventory -i INV --list``, for what only Ansible
can evaluate (vault, inventory plugins such as cloud or NetBox, constructed groups, scripts).

The JSON it prints becomes the same ``ParsedInventory`` our own reader makes, so one mapping
serves both. Variables come already merged by Ansible's precedence (``_meta.hostvars``);
``ansible-inventory`` does not render Jinja, so a template is still refused by name.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

from controller.adapters.ansible.model import ALL, ParsedHost, ParsedInventory, Var
from controller.adapters.ansible.yaml_load import EncryptedValue, Unsafe
from controller.errors import InvalidData, UsageError

BINARY = "ansible-inventory"


def find_ansible() -> str | None:
    """The ``ansible-inventory`` on PATH (or beside this Python), if any."""
    found = shutil.which(BINARY)
    if found:
        return found
    import sys

    beside = Path(sys.executable).parent / BINARY
    return str(beside) if beside.exists() else None


def run_ansible(path: Path, binary: str | None = None, timeout_s: float = 300.0
                ) -> ParsedInventory:
    """Raises:
        UsageError: Ansible is not installed.
        InvalidData: Ansible could not read the inventory (its own first error line).
    """
    binary = binary or find_ansible()
    if not binary:
        raise UsageError("--via-ansible needs ansible-inventory, which is not installed",
                         hint="pip install ansible-core, or import without --via-ansible")
    env = {**os.environ, "ANSIBLE_INVENTORY_UNPARSED_FAILED": "true",
           "ANSIBLE_NOCOLOR": "1", "ANSIBLE_DEPRECATION_WARNINGS": "false"}
    try:
        done = subprocess.run([binary, "-i", str(path), "--list"], capture_output=True,
                              text=True, timeout=timeout_s, env=env, stdin=subprocess.DEVNULL,
                              check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise InvalidData(f"{path}: ansible-inventory did not run: {exc}",
                          hint="run `ansible-inventory -i PATH --list` yourself to see why"
                          ) from exc
    if done.returncode != 0:
        raise InvalidData(f"{path}: ansible-inventory failed: {_first_error(done.stderr)}",
                          hint="nothing was imported; `ansible-inventory -i PATH --list` "
                          "shows the whole error")
    try:
        data = json.loads(done.stdout)
    except json.JSONDecodeError as exc:
        raise InvalidData(f"{path}: ansible-inventory printed no JSON",
                          hint="nothing was imported") from exc
    inventory = from_list_json(data, str(path))
    inventory.warnings.extend(_warnings(done.stderr))
    return inventory


def from_list_json(data: dict[str, Any], source: str) -> ParsedInventory:
    """``ansible-inventory --list`` output as a ``ParsedInventory``."""
    hostvars: dict[str, dict[str, Any]] = data.get("_meta", {}).get("hostvars", {})
    direct: dict[str, list[str]] = {}
    parents: dict[str, list[str]] = {}
    for name, group in data.items():
        if name == "_meta":
            continue
        if name != ALL:
            parents.setdefault(name, [])
        for child in group.get("children", []):
            if name != ALL:
                parents.setdefault(child, []).append(name)
            else:
                parents.setdefault(child, [])
        for host in group.get("hosts", []):
            direct.setdefault(host, []).append(name)
    names = set(direct) | set(hostvars)
    hostvars = {name: {k: _untag(v) for k, v in hv.items()} for name, hv in hostvars.items()}
    hosts = {
        name: ParsedHost(name, source,
                         {k: Var(v, f"{source} ({name})") for k, v in
                          hostvars.get(name, {}).items()},
                         sorted(direct.get(name, ["ungrouped"])))
        for name in sorted(names)}
    return ParsedInventory(source, hosts, parents, sorted(parents))


def _untag(value: Any) -> Any:
    """ansible-inventory's JSON tags: ``__ansible_unsafe`` text is text never templated;
    ``__ansible_vault`` is a value it could not decrypt."""
    if isinstance(value, dict):
        if set(value) == {"__ansible_unsafe"}:
            return Unsafe(value["__ansible_unsafe"])
        if set(value) == {"__ansible_vault"}:
            return EncryptedValue(value["__ansible_vault"])
        return {k: _untag(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_untag(v) for v in value]
    return value


def _first_error(stderr: str) -> str:
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    for line in lines:
        if line.startswith("[ERROR]") or "Failed to parse" in line:
            return line.removeprefix("[ERROR]:").strip()[:300]
    return (lines[0] if lines else "no message")[:300]


def _warnings(stderr: str) -> list[str]:
    return [line.removeprefix("[WARNING]:").strip() for line in stderr.splitlines()
            if line.startswith("[WARNING]")]
