"""Device addresses: what may be stored and, later, written into scripts on a device (pure).

An address is an IP address (v4 or v6) or a host name: labels of letters, digits, ``-`` and
``_`` (ssh_config aliases use it), separated by dots, 253 characters at most; nothing else (no
spaces, quotes, ``$``, ``;``, ``/``...). The same rule as the Ansible import's.
"""

from __future__ import annotations

import ipaddress
import re

from controller.errors import UsageError

HOSTNAME = re.compile(r"^(?=.{1,253}$)[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,62})"
                      r"(?:\.[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,62}))*\.?$")


def valid_address(value: str) -> bool:
    """An IP address or a DNS host name (or an ssh_config alias of that shape)."""
    try:
        ipaddress.ip_address(value)
        return True
    except ValueError:
        return bool(HOSTNAME.match(value)) and "\n" not in value


def check_host(value: str, what: str = "--host") -> str:
    if not valid_address(value):
        raise UsageError(f"{what} {value!r} is neither an IP address nor a host name",
                         hint="use an address such as 10.0.0.5 or kiosk-3.example.com (letters, "
                         "digits, '-', '_' and dots)")
    return value
