"""`fleet pki status|rotate|push|protect`: the fleet's certificates and keys over time."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from controller import settings
from controller.cli.common import console, esc, fleet, print_json
from controller.errors import DeployFailed, UsageError

if TYPE_CHECKING:
    from controller.services.trust import Delivered

app = typer.Typer(help="The fleet's certificates and keys: expiry, rotation, revocation.",
                  no_args_is_help=True)
DEVICES = typer.Option(None, "--device", "-d", help="A device (repeatable).")
PROTECT_TO = typer.Option(..., "--to", help="Directory for the CA and signing keys "
                          "(removable media, another mount).")


@app.command("status")
def status(
    ctx: typer.Context,
    warn_days: float = typer.Option(30.0, "--warn-days", help="Warn about certificates that "
                                    "expire within this many days."),
    live: bool = typer.Option(False, "--live", help="Also ask each agent (a TLS handshake) "
                              "which certificate it serves."),
    check: bool = typer.Option(False, "--check", help="Exit 1 when there is any warning "
                               "(for cron and monitoring)."),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Expiry of the CA, the controller's and every enrolled device's certificate; where the
    keys live; the revocation list and which devices hold it."""
    from controller.services.pki_status import pki_status

    found = pki_status(fleet(ctx), warn_days, live)
    if as_json:
        print_json({
            "certificates": [{"what": c.what, "subject": c.subject,
                              "serial": f"{c.serial:x}" if c.serial else None,
                              "not_after": c.not_after, "days_left": c.days_left,
                              "crl_number": c.crl_number, "note": c.note,
                              "served_serial": f"{c.served_serial:x}" if c.served_serial
                              else None} for c in found.certs],
            "keys": [vars(k) for k in found.keys], "signing_fingerprint":
            found.signing_fingerprint, "crl_number": found.crl_number,
            "revoked": [{"serial": s, "subject": n, "reason": r} for s, n, r in found.revoked],
            "warnings": found.warnings})
    else:
        from rich.table import Table

        table = Table("certificate", "subject", "serial", "expires", "days", "note")
        for c in found.certs:
            days = "-" if c.days_left is None else f"{c.days_left:.0f}"
            colour = "red" if c.days_left is not None and c.days_left < warn_days else ""
            table.add_row(c.what, esc(c.subject), f"{c.serial:x}"[:16] if c.serial else "-",
                          f"{c.not_after:%Y-%m-%d}" if c.not_after else "-",
                          f"[{colour}]{days}[/]" if colour else days, esc(c.note))
        console.print(table)
        for k in found.keys:
            state = ("encrypted" if k.encrypted else "not encrypted") if k.present else (
                "NOT PRESENT (set FLEET_CA_KEY / FLEET_SIGNING_KEY, mount its medium)")
            console.print(f"{k.what}: {esc(k.path)} ({state})")
        console.print(f"signing key fingerprint {found.signing_fingerprint}; revocation list "
                      f"{found.crl_number or 'none'} ({len(found.revoked)} revoked)")
        for warning in found.warnings:
            console.print(f"[yellow]warning:[/] {esc(warning)}")
    if check and found.warnings:
        raise typer.Exit(1)


@app.command("rotate")
def rotate(
    ctx: typer.Context,
    controller: bool = typer.Option(False, "--controller", help="A new certificate and key "
                                    "for this controller."),
    device: list[str] = DEVICES,
    group: str = typer.Option(None, "--group", "-g", help="Every enrolled device of a group."),
    signing_key: bool = typer.Option(False, "--signing-key", help="A new manifest-signing key, "
                                     "delivered to every enrolled device."),
    revoke_old: bool = typer.Option(False, "--revoke-old", help="Revoke the certificates "
                                    "replaced (after a lost laptop or a compromised device)."),
) -> None:
    """Replace certificates or the signing key; agents keep serving throughout."""
    from controller.services import rotation

    f = fleet(ctx)
    names = list(device or [])
    if group:
        from controller.services.trust import enrolled

        names += [d.name for d in enrolled(f, [x.name for x in f.inventory.devices_in_group(
            group)])]
    if not (controller or names or signing_key):
        raise UsageError("nothing to rotate", hint="--controller, --device NAME, --group G "
                         "or --signing-key")
    failed = 0
    if controller:
        done, delivered = rotation.rotate_controller(f, revoke_old)
        console.print(f"controller: new certificate {done.new_serial:x} (was "
                      f"{done.old_serial:x}" + (", revoked)" if revoke_old else ")"))
        failed += _print_delivery(delivered, "revocation list")
    if names:
        for r in rotation.rotate_devices(f, sorted(set(names)), revoke_old):
            if r.ok:
                console.print(f"{r.subject}: serving new certificate {r.new_serial:x}")
            else:
                failed += 1
                console.print(f"[red]{r.subject}: {esc(r.detail)}[/]")
    if signing_key:
        fingerprint, delivered = rotation.rotate_signing_key(f)
        console.print(f"signing key: new key {fingerprint}")
        failed += _print_delivery(delivered, "signing key")
    if failed:
        raise DeployFailed(f"{failed} device(s) not updated",
                           hint="`fleet pki push --device NAME` when they are reachable; "
                           "`fleet pki status` shows where each stands")


def _print_delivery(delivered: list[Delivered], what: str) -> int:
    bad = [d for d in delivered if not d.ok]
    if delivered:
        console.print(f"  {what} delivered to {len(delivered) - len(bad)} of "
                      f"{len(delivered)} devices")
    for d in bad:
        console.print(f"  [red]{d.device}: {esc(d.detail)}[/]")
    return len(bad)


@app.command("push")
def push(ctx: typer.Context, device: list[str] = DEVICES) -> None:
    """Give devices the current CA, signing key and revocation list over SSH (all enrolled
    devices, or those named)."""
    from controller.services.trust import push as push_trust

    delivered = push_trust(fleet(ctx), list(device) if device else None)
    if _print_delivery(delivered, "trust"):
        raise DeployFailed("some devices were not updated", hint="retry when they are reachable")


@app.command("protect")
def protect(
    ctx: typer.Context,
    to: Path = PROTECT_TO,
    plain: bool = typer.Option(False, "--plain", help="Move them without a passphrase."),
) -> None:
    """Move the CA key and the signing key out of $FLEET_HOME/pki, encrypted with the
    passphrase of FLEET_PKI_PASSPHRASE or FLEET_PKI_PASSPHRASE_FILE."""
    from controller.adapters.audit_log import audit

    f = fleet(ctx)
    passphrase = settings.pki_passphrase()
    if passphrase is None and not plain:
        raise UsageError("no passphrase: set FLEET_PKI_PASSPHRASE or "
                         "FLEET_PKI_PASSPHRASE_FILE", hint="or pass --plain to move the keys "
                         "unencrypted")
    moved = f.pki.move_keys(to.expanduser().resolve(), passphrase)
    audit("protect", to=str(to), encrypted=passphrase is not None)
    console.print(f"moved {', '.join(str(p) for p in moved)}"
                  + (" (encrypted)" if passphrase else ""))
    console.print("from now on set, for commands that issue, revoke or sign:")
    console.print(f"  export FLEET_CA_KEY={moved[0]} FLEET_SIGNING_KEY={moved[1]}",
                  markup=False, highlight=False)
    if os.environ.get("FLEET_PKI_PASSPHRASE"):
        console.print("  (and FLEET_PKI_PASSPHRASE, or FLEET_PKI_PASSPHRASE_FILE)")
