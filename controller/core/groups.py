"""Groups as Ansible has them, pure: names, nesting, and which groups lie below a group.

A device is directly in any number of groups; a group may sit inside other groups (Ansible's
``children``). ``all`` is every device and is never stored; ``ungrouped`` holds the devices
that are in no other group, as in Ansible.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

from controller.errors import UsageError

ALL = "all"
UNGROUPED = "ungrouped"
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}")
GROUP_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,62}")


# the controller's certificate subject (controller.adapters.pki.CONTROLLER_NAME): a device of
# that name would share its certificate records (a removal would revoke the controller's)
RESERVED_DEVICE_NAMES = frozenset({"edgefleet-controller"})


def check_device_name(value: str) -> str:
    if not NAME.fullmatch(value):
        raise UsageError(f"invalid device name {value!r}",
                         hint="use letters, digits, '.', '_' and '-' (max 63)")
    if value in RESERVED_DEVICE_NAMES:
        raise UsageError(f"{value!r} is the controller's own certificate name",
                         hint="name the device something else")
    return value


def check_group_name(value: str) -> str:
    if not GROUP_NAME.fullmatch(value):
        raise UsageError(f"invalid group name {value!r}",
                         hint="use letters, digits, '.', '_' and '-' (max 63)")
    if value == ALL:
        raise UsageError("'all' is every device and cannot be a stored group",
                         hint="pick another name; --group all selects the whole fleet")
    return value


def below(group: str, children: Mapping[str, Iterable[str]]) -> set[str]:
    """``group`` and every group nested in it, at any depth."""
    found = {group}
    todo = [group]
    while todo:
        for child in children.get(todo.pop(), ()):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def children_of(edges: Iterable[tuple[str, str]]) -> dict[str, list[str]]:
    """``(child, parent)`` pairs to each parent's children."""
    out: dict[str, list[str]] = {}
    for child, parent in edges:
        out.setdefault(parent, []).append(child)
    return out


def loop_made_by(child: str, parent: str, edges: Iterable[tuple[str, str]]) -> bool:
    """Would putting ``child`` inside ``parent`` make a group contain itself?"""
    return child == parent or parent in below(child, children_of(edges))


def direct_groups(groups: Iterable[str]) -> list[str]:
    """A device's stored groups: ``ungrouped`` only when it is in no other group."""
    named = sorted(set(groups) - {UNGROUPED, ALL})
    return named or [UNGROUPED]
