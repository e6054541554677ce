"""Ansible itself as the reader: ``ansible-inventory -i INV --list``, for what only Ansible
can evaluate (vault, inventory plugins such as cloud or NetBox, constructed groups, scripts).

The JSON it prints becomes the same ``ParsedInventory`` our own reader makes, so one mapping
serves both. Variables come already merged by Ansible's precedence (``_meta.hostvars``);
``ansible-inventory`` neither renders Jinja nor decrypts vault values, so where a host has
such values, one ``ansible HOSTS -m ansible.builtin.debug`` run (which contacts no host) asks
Ansible for them, rendered and decrypted, exactly as a playbook would see them.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

from controller.adapters.ansible.model import ALL, ParsedHost, ParsedInventory, Var
from controller.adapters.ansible.yaml_load import EncryptedValue, Unsafe
from controller.errors import InvalidData, UsageError

BINARY = "ansible-inventory"
_TEMPLATE = re.compile(r"\{\{|\{%|\{#")
_RESULT = re.compile(r"^(\S+) \| [A-Z!]+ => (\{.*?^\})$", re.M | re.S)


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
    _render(inventory, path, binary, env, timeout_s)
    return inventory


def _needs_ansible(value: Any) -> bool:
    if isinstance(value, EncryptedValue):
        return True
    if isinstance(value, str):
        return not isinstance(value, Unsafe) and bool(_TEMPLATE.search(value))
    if isinstance(value, dict):
        return any(_needs_ansible(k) or _needs_ansible(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_needs_ansible(v) for v in value)
    return False


def _render(inventory: ParsedInventory, path: Path, list_binary: str, env: dict[str, str],
            timeout_s: float) -> None:
    """Replace templates and vault values by what Ansible makes of them."""
    wanted = {name: sorted(k for k, v in host.vars.items() if _needs_ansible(v.value))
              for name, host in inventory.hosts.items()}
    wanted = {name: keys for name, keys in wanted.items() if keys}
    if not wanted:
        return
    binary = str(Path(list_binary).with_name("ansible"))
    keys = sorted({k for ks in wanted.values() for k in ks})
    expression = ", ".join(f"{json.dumps(k)}: hostvars[inventory_hostname][{json.dumps(k)}]"
                           f" | default(None)" for k in keys)
    command = [binary, "all", "-i", str(path), "--limit", ",".join(sorted(wanted)),
               "-m", "ansible.builtin.debug", "-a", f"msg={{{{ {{{expression}}} }}}}"]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout_s,
                              env={**env, "ANSIBLE_STDOUT_CALLBACK": "ansible.builtin.minimal"},
                              stdin=subprocess.DEVNULL, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise InvalidData(f"{path}: ansible could not render the inventory's templates: {exc}",
                          hint="nothing was imported") from exc
    results = _minimal_results(done.stdout)
    for name, host_keys in wanted.items():
        result = results.get(name)
        if result is None or "msg" not in result or not isinstance(result["msg"], dict):
            why = (result or {}).get("msg") or _first_error(done.stderr)
            raise InvalidData(f"{path}: {name}: Ansible could not render "
                              f"{', '.join(host_keys)}: {str(why)[:300]}",
                              hint="nothing was imported; check the template, and give the "
                              "vault password (ANSIBLE_VAULT_PASSWORD_FILE) for vault values")
        for key in host_keys:
            old = inventory.hosts[name].vars[key]
            inventory.hosts[name].vars[key] = Var(result["msg"].get(key), old.origin)


def _minimal_results(stdout: str) -> dict[str, dict[str, Any]]:
    """``HOST | SUCCESS => {json}`` blocks of Ansible's minimal callback."""
    out: dict[str, dict[str, Any]] = {}
    for m in _RESULT.finditer(stdout):
        try:
            out[m.group(1)] = json.loads(m.group(2))
        except json.JSONDecodeError:
            continue
    return out


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
