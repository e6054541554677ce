"""`fleet doctor`: for the controller and each device, what would stop a deploy, with the fix.

The controller: the database URL's driver and schema, the fleet CA and the controller's
client certificate, free disk for the model cache. Each device, in parallel: SSH (reachable,
host key known, login works), the agent (reachable over gRPC, its version and capabilities,
its clock against ours), the agent's certificate (read over SSH from its ``tls/``), and free
disk at its store. What could not be looked at because something before it failed is
``unknown``, never guessed. The judging is ``controller.core.doctor``'s.
"""

from __future__ import annotations

import contextlib
import shutil
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import TYPE_CHECKING

from agent import __version__
from controller import settings
from controller.core import doctor
from controller.core.doctor import CONTROLLER, OK, PROBLEM, UNKNOWN, WARN, Check
from controller.errors import FleetError, HostKeyMismatch, HostKeyUnknown, Unreachable

if TYPE_CHECKING:
    from controller.adapters.tables import Device
    from controller.services.context import Fleet


@dataclass(frozen=True)
class DoctorReport:
    checks: list[Check]
    devices: list[str]

    @property
    def exit_code(self) -> int:
        return doctor.exit_code(self.checks)


def _now() -> datetime:
    return datetime.now(timezone.utc)


def database_checks(db: str | None) -> list[Check]:
    """The configured database's driver, and whether it opens at this code's schema."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    from controller.adapters.db import DRIVER_HINTS, safe_url

    url = settings.db_url(db)
    shown = safe_url(url)
    try:
        dialect = make_url(url).get_dialect()
        dialect.import_dbapi()
    except ModuleNotFoundError as exc:
        return [Check(CONTROLLER, "database", PROBLEM, f"{shown}: no driver ({exc})",
                      DRIVER_HINTS.get(exc.name or "", "install the driver the URL names"))]
    except (ArgumentError, ValueError) as exc:
        return [Check(CONTROLLER, "database", PROBLEM, f"{shown}: {exc}",
                      "pass a SQLAlchemy URL such as sqlite:///fleet.db or "
                      "postgresql+psycopg://user@host/db")]
    return [Check(CONTROLLER, "database", OK, f"{shown} (driver {dialect.driver})",
                  short=dialect.name)]


def controller_checks(fleet: Fleet) -> list[Check]:
    from controller.adapters.pki import cert_expiry

    pki = fleet.pki
    now = _now()
    checks = [doctor.cert_check(CONTROLLER, "ca", cert_expiry(pki.ca_cert_path), now,
                                "a new CA means re-enrolling every device (fleet device "
                                "enroll NAME)"),
              doctor.cert_check(CONTROLLER, "cert", cert_expiry(pki.client_cert_path), now,
                                f"remove {pki.client_cert_path} and {pki.client_key_path}; the "
                                "next command issues a new one from the fleet CA")]
    home = settings.fleet_home()
    checks.append(doctor.disk_check(CONTROLLER, shutil.disk_usage(home).free,
                                    f"at {home}", "free space for the model cache "
                                    f"({settings.models_dir()})"))
    return checks


def _ssh_facts(fleet: Fleet, device: Device) -> tuple[list[Check], bytes | None, int | None]:
    """The SSH check, the agent's certificate (PEM) and free bytes at its data dir."""
    from controller.adapters.remote import RemoteHost, q
    from controller.services.enrolling import _base

    name = device.name
    try:
        ssh = fleet.transfer.connect(fleet.ssh_target(device))
    except HostKeyUnknown as exc:
        return [Check(name, "ssh", PROBLEM, "host key unknown", exc.hint)], None, None
    except HostKeyMismatch as exc:
        return [Check(name, "ssh", PROBLEM, "host key CHANGED", exc.hint)], None, None
    except Unreachable as exc:
        return [Check(name, "ssh", PROBLEM, _short(exc.message, name), exc.hint,
                      unreachable=True)], None, None
    except FleetError as exc:
        return [Check(name, "ssh", PROBLEM, _short(exc.message, name), exc.hint)], None, None
    try:
        remote = RemoteHost(name, ssh)
        base = _base(remote, device.data_dir)
        ran = remote.run(f"df -Pk {q(base)} 2>/dev/null | tail -n 1; "
                         f"cat {q(base)}/tls/agent.crt 2>/dev/null", timeout_s=20)
    except FleetError as exc:
        return [Check(name, "ssh", PROBLEM, _short(exc.message, name), exc.hint,
                      unreachable=True)], None, None
    finally:
        ssh.close()
    first, _, pem = ran.out.partition("\n")
    free = None
    with contextlib.suppress(ValueError, IndexError):
        free = int(first.split()[3]) * 1024
    return ([Check(name, "ssh", OK, f"{device.user + '@' if device.user else ''}"
                   f"{device.host}:{device.ssh_port}")],
            pem.encode() if "BEGIN CERTIFICATE" in pem else None, free)


def _short(message: str, name: str) -> str:
    return message.removeprefix(f"{name}: ")


def device_checks(fleet: Fleet, device: Device) -> list[Check]:
    from controller.adapters.device_link import agent_version
    from controller.adapters.pki import cert_expiry_pem

    name = device.name
    checks, pem, df_free = _ssh_facts(fleet, device)
    store_free: int | None = None
    try:
        with fleet.client(device, timeout_s=5) as client:
            sent = time.time()
            agent = agent_version(client.get_version(), sent, time.time())
            store_free = int(client.get_store().disk_free_bytes)
        checks.append(Check(name, "agent", OK, f"{device.host}:{device.agent_port}"
                            + (" (mutual TLS)" if device.tls else "")))
        checks += doctor.version_checks(name, agent, __version__)
    except FleetError as exc:
        # SSH answering while the agent does not: the agent is down, not the link
        away = isinstance(exc, Unreachable) and checks[0].unreachable
        checks.append(Check(name, "agent", PROBLEM, _short(exc.message, name),
                            f"fleet device rescue {name} (restarts it over SSH, shows its log)"
                            if isinstance(exc, Unreachable) and not away else exc.hint,
                            unreachable=away))
        checks += [Check(name, "version", UNKNOWN, "agent not reachable"),
                   Check(name, "clock", UNKNOWN, "agent not reachable")]
    fix = ("restart the lab: fleet lab up" if device.lab else
           f"fleet device enroll {name} (issues a new certificate; the store is kept)")
    if pem:
        checks.append(doctor.cert_check(name, "cert", cert_expiry_pem(pem), _now(), fix))
    elif checks[0].level != OK:
        checks.append(Check(name, "cert", UNKNOWN, "not read: SSH failed", fix))
    elif device.tls:
        checks.append(doctor.cert_check(name, "cert", None, _now(), fix))
    else:
        checks.append(Check(name, "cert", WARN, "no TLS: the agent serves anyone who can "
                            "reach it", f"fleet device enroll {name}"))
    free = store_free if store_free is not None else df_free
    checks.append(doctor.disk_check(name, free, "at the store" if store_free is not None
                                    else "at the agent's directory",
                                    "free space on the device (old models go with `fleet "
                                    "deploy` of a new one)"))
    return checks


def examine(db: str | None, open_fleet: Callable[[], Fleet],
            select: Callable[[Fleet], list[Device]], concurrency: int = 16) -> DoctorReport:
    """Every check of the controller and of each device ``select`` picks."""
    checks = database_checks(db)
    if checks[-1].level != OK:
        return DoctorReport(checks, [])
    try:
        fleet = open_fleet()
        checks[-1] = Check(CONTROLLER, "database", OK, checks[-1].detail + "; schema current",
                           short=checks[-1].short)
    except FleetError as exc:
        checks[-1] = Check(CONTROLLER, "database", PROBLEM, exc.message, exc.hint)
        return DoctorReport(checks, [])
    checks += controller_checks(fleet)
    devices = select(fleet)
    with ThreadPoolExecutor(max_workers=max(1, min(concurrency, len(devices)))) as pool:
        for found in pool.map(lambda d: device_checks(fleet, d), devices):
            checks += found
    return DoctorReport(checks, [d.name for d in devices])
