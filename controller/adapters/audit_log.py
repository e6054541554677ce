"""The audit log: operator actions that change what the fleet trusts, one JSON line each, in
``$FLEET_HOME/audit.log`` (0600): time, local user, host, action and its details."""

from __future__ import annotations

import datetime as dt
import getpass
import json
import os
import socket
from pathlib import Path
from typing import Any

from controller import settings


def audit_path() -> Path:
    return settings.fleet_home() / "audit.log"


def audit(action: str, **details: Any) -> None:
    path = audit_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    line = json.dumps({"at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
                       "user": getpass.getuser(), "host": socket.gethostname(),
                       "action": action, **details}, sort_keys=False, default=str)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    with os.fdopen(fd, "a") as fh:
        fh.write(line + "\n")


def read_audit() -> list[dict[str, Any]]:
    path = audit_path()
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
