"""From Ansible's variables to a device: what is mapped, what becomes a label, what is
ignored (and why), and which hosts are skipped because they are not reached over SSH.

Mapped, where both spellings are set the one Ansible itself prefers winning (``ansible_ssh_*``):

    address      ansible_ssh_host > ansible_host > the inventory name
    SSH port     ansible_ssh_port > ansible_port > 22
    user         ansible_ssh_user > ansible_user
    key          ansible_ssh_private_key_file > ansible_private_key_file
    jump host    -J / -o ProxyJump / ``ssh -W %h:%p`` ProxyCommand in ansible_ssh_args,
                 ansible_ssh_common_args, ansible_ssh_extra_args (the first, as ssh takes it)
    profile      edgefleet_profile;   agent port: edgefleet_agent_port

Every other ``ansible_*`` / ``edgefleet_*`` variable is ignored and named; every variable not
so prefixed becomes a label (text as is, anything else as JSON). Jinja (``{{``, ``{%``,
``{#``) is refused by name wherever it is: only Ansible can evaluate it.
"""

from __future__ import annotations

import json
import re
import shlex
from dataclasses import dataclass, field
from typing import Any

from controller.adapters.ansible.model import ParsedHost, ParsedInventory, Var, error
from controller.adapters.ansible.yaml_load import EncryptedValue, Unsafe
from controller.core.groups import GROUP_NAME, NAME
from controller.core.hosts import valid_address

SSH_CONNECTIONS = {"ssh", "smart", "paramiko", "paramiko_ssh", "ansible.builtin.ssh",
                   "ansible.builtin.paramiko_ssh", "ansible.legacy.ssh"}
ADDRESS = ("ansible_ssh_host", "ansible_host")  # first set wins, as in Ansible
PORT = ("ansible_ssh_port", "ansible_port")
USER = ("ansible_ssh_user", "ansible_user")
KEY = ("ansible_ssh_private_key_file", "ansible_private_key_file")
SSH_ARGS = ("ansible_ssh_args", "ansible_ssh_common_args", "ansible_ssh_extra_args")
OURS = ("edgefleet_profile", "edgefleet_agent_port")
_JINJA = re.compile(r"\{\{|\{%|\{#")


@dataclass
class MappedHost:
    name: str
    origin: str
    address: str
    port: int
    user: str
    key: str
    proxy_jump: str
    profile: str
    agent_port: int
    groups: list[str]
    labels: dict[str, str]
    mapped: dict[str, str] = field(default_factory=dict)  # field -> the variable it came from
    ignored: dict[str, str] = field(default_factory=dict)  # variable -> why


@dataclass
class SkippedHost:
    name: str
    origin: str
    reason: str


@dataclass
class Mapping:
    hosts: list[MappedHost]
    skipped: list[SkippedHost]
    parents: dict[str, list[str]]
    groups: list[str]
    warnings: list[str]


def map_hosts(inventory: ParsedInventory) -> Mapping:
    hosts, skipped = [], []
    for group in inventory.groups:
        if not GROUP_NAME.fullmatch(group):
            raise error(inventory.source, f"group name {group!r} is not one edgefleet can "
                        "store (letters, digits, '.', '_', '-'; max 63)")
    for host in inventory.hosts.values():
        connection = _value(host, "ansible_connection")
        if connection is not None and str(connection) not in SSH_CONNECTIONS:
            skipped.append(SkippedHost(host.name, host.vars["ansible_connection"].origin,
                                       f"ansible_connection={connection} is not SSH"))
            continue
        hosts.append(_map(host))
    return Mapping(hosts, skipped, inventory.parents, inventory.groups, inventory.warnings)


def _value(host: ParsedHost, name: str) -> Any:
    var = host.vars.get(name)
    return None if var is None else var.value


def _first(host: ParsedHost, names: tuple[str, ...], mapped: dict[str, str],
           what: str) -> Any:
    for name in names:
        value = _value(host, name)
        if value is not None:
            mapped[what] = name
            return value
    return None


def _map(host: ParsedHost) -> MappedHost:
    for name, var in host.vars.items():
        _refuse_jinja(host, name, var, var.value)
    if not NAME.fullmatch(host.name):
        raise error(host.origin, f"host name {host.name!r} is not a device name edgefleet "
                    "accepts (letters, digits, '.', '_', '-'; max 63)"
                    + ("; name the host and set ansible_host to the address"
                       if ":" in host.name else ""))
    mapped: dict[str, str] = {}
    address = str(_first(host, ADDRESS, mapped, "address") or host.name)
    if not valid_address(address):
        raise error(_origin(host, mapped.get("address")),
                    f"{host.name}: {address!r} is neither an IP address nor a host name")
    port = _number(host, _first(host, PORT, mapped, "port"), mapped.get("port"), 22)
    user = str(_first(host, USER, mapped, "user") or "")
    key = str(_first(host, KEY, mapped, "key") or "")
    ignored: dict[str, str] = {}
    jump = ""
    for name in SSH_ARGS:
        text = _value(host, name)
        if text is None:
            continue
        found, others = _jump_of(host, name, str(text))
        if found and not jump:
            jump, mapped["proxy_jump"] = found, name
        if others:
            ignored[name] = f"ssh options other than the jump host: {' '.join(others)}"
    profile = str(_value(host, "edgefleet_profile") or "")
    agent_port = _number(host, _value(host, "edgefleet_agent_port"), "edgefleet_agent_port",
                         50051)
    used = set(mapped.values()) | {"edgefleet_profile", "edgefleet_agent_port",
                                   "ansible_connection"}
    labels = {}
    for name, var in host.vars.items():
        if name in used or name in ignored:
            continue
        if name.startswith(("ansible_", "edgefleet_")):
            ignored[name] = ("overridden by " + _winner(name, mapped)
                             if _winner(name, mapped) else "not used by edgefleet")
        else:
            labels[name] = var.value if isinstance(var.value, str) else json.dumps(
                var.value, sort_keys=True)
    return MappedHost(host.name, host.origin, address, port, user, key, jump, profile,
                      agent_port, sorted(host.groups), labels, mapped, ignored)


def _winner(name: str, mapped: dict[str, str]) -> str:
    for names in (ADDRESS, PORT, USER, KEY):
        if name in names:
            return next((m for m in mapped.values() if m in names), "")
    return ""


def _origin(host: ParsedHost, name: str | None) -> str:
    return host.vars[name].origin if name and name in host.vars else host.origin


def _number(host: ParsedHost, value: Any, name: str | None, default: int) -> int:
    if value is None:
        return default
    text = str(value)
    if isinstance(value, bool) or not text.isdigit() or not 0 < int(text) < 65536:
        raise error(_origin(host, name), f"{host.name}: {name} must be a port number "
                                         f"(1-65535), got {value!r}")
    return int(text)


def _refuse_jinja(host: ParsedHost, name: str, var: Var, value: Any) -> None:
    if isinstance(value, EncryptedValue):
        raise error(var.origin, f"{host.name}: variable {name} is vault-encrypted and was not "
                    "decrypted: give Ansible the vault password (ANSIBLE_VAULT_PASSWORD_FILE)")
    if isinstance(value, str) and not isinstance(value, Unsafe) and _JINJA.search(value):
        raise error(var.origin, f"{host.name}: variable {name} is a Jinja template "
                    f"({value[:60]!r}); only Ansible can evaluate it: import with "
                    "--via-ansible, or write the value out")
    if isinstance(value, dict):
        for k, v in value.items():
            _refuse_jinja(host, name, var, k)
            _refuse_jinja(host, name, var, v)
    elif isinstance(value, list):
        for item in value:
            _refuse_jinja(host, name, var, item)


def _jump_of(host: ParsedHost, name: str, text: str) -> tuple[str, list[str]]:
    """The jump host in one ssh argument string, and the other options found there."""
    origin = _origin(host, name)
    try:
        args = shlex.split(text)
    except ValueError as exc:
        raise error(origin, f"{host.name}: cannot split {name} ({exc})") from exc
    jump, others = "", []
    i = 0
    while i < len(args):
        arg = args[i]
        option = ""
        if arg == "-J" and i + 1 < len(args):
            jump, i = jump or args[i + 1], i + 2
            continue
        if arg.startswith("-J") and len(arg) > 2:
            jump, i = jump or arg[2:], i + 1
            continue
        if arg == "-o" and i + 1 < len(args):
            option, i = args[i + 1], i + 2
        elif arg.startswith("-o") and len(arg) > 2:
            option, i = arg[2:], i + 1
        else:
            others.append(arg)
            i += 1
            continue
        key, _, value = option.replace("=", " ", 1).partition(" ")
        value = value.strip()
        if key.lower() == "proxyjump":
            jump = jump or value
        elif key.lower() == "proxycommand":
            jump = jump or _proxy_command_jump(host, origin, value)
        else:
            others.append(f"-o {option}")
    if jump and jump.lower() != "none":
        for hop in jump.split(","):
            bare = hop.rpartition("@")[2]
            bare = bare[1:].partition("]")[0] if bare.startswith("[") else bare.partition(":")[0]
            if not valid_address(bare):
                raise error(origin, f"{host.name}: jump host {hop!r} in {name} is not a host")
    return jump, others


def _proxy_command_jump(host: ParsedHost, origin: str, command: str) -> str:
    """``ssh [-q] [-p PORT] [-l USER] [-i KEY] -W %h:%p [USER@]BASTION`` is a jump host;
    any other ProxyCommand is refused by name."""
    refusal = error(origin, f"{host.name}: ProxyCommand {command!r} is not supported; only "
                    "'ssh -W %h:%p [user@]bastion' (a jump host) is: use ProxyJump (-J)")
    try:
        words = shlex.split(command)
    except ValueError as exc:
        raise refusal from exc
    if not words or words[0].rpartition("/")[2] != "ssh":
        raise refusal
    user, port, target, forward = "", "", "", ""
    i = 1
    while i < len(words):
        word = words[i]
        if word in ("-W", "-p", "-l", "-i", "-o") and i + 1 < len(words):
            value = words[i + 1]
            if word == "-W":
                forward = value
            elif word == "-p":
                port = value
            elif word == "-l":
                user = value
            i += 2
        elif word in ("-q", "-T", "-N", "-4", "-6", "-C"):
            i += 1
        elif not word.startswith("-") and not target:
            target, i = word, i + 1
        else:
            raise refusal
    if forward != "%h:%p" or not target:
        raise refusal
    if user and "@" not in target:
        target = f"{user}@{target}"
    return f"{target}:{port}" if port else target
