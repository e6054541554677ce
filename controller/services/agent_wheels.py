"""The agent's wheels on a device: the one installed and the one before it, so that
`fleet device upgrade` can go back when a new agent does not come up.

Under the agent's base directory (see ``controller.services.enrolling``)::

    wheels/<sha256[:16]>/edgefleet-VERSION-py3-none-any.whl   one folder per wheel
    wheels/current     the installed wheel, relative to wheels/
    wheels/previous    the one installed before it
    extras             the runtime extras enrollment installed (llama, onnx, agent, none)

A device enrolled before this layout has its wheel loose in ``wheels/``; it is adopted as
``current`` the first time (``adopt_current``). Pointers move only after pip succeeded, and
folders other than the current and previous wheel are removed.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

from controller.adapters.constraints import constraints_text
from controller.adapters.remote import RemoteHost, q
from controller.errors import UsageError

WHEEL_NAME = re.compile(r"edgefleet-(?P<version>[^-]+)-.+\.whl")


@dataclass(frozen=True)
class Wheel:
    """An edgefleet wheel on the controller."""

    path: Path
    version: str
    sha256: str

    @property
    def rel(self) -> str:
        return f"{self.sha256[:16]}/{self.path.name}"


def wheel_of(path: Path) -> Wheel:
    match = WHEEL_NAME.fullmatch(path.name)
    if match is None:
        raise UsageError(f"{path.name} is not an edgefleet wheel",
                         hint="pass edgefleet-VERSION-py3-none-any.whl (pip wheel .)")
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    return Wheel(path, match["version"], digest)


def version_of(rel: str) -> str:
    match = WHEEL_NAME.fullmatch(rel.rsplit("/", 1)[-1])
    return match["version"] if match else ""


def read_extras(remote: RemoteHost, base: str) -> str:
    """What enrollment installed with the agent ('none' when it left no note)."""
    ran = remote.run(f"cat {q(base)}/extras 2>/dev/null")
    extras = ran.out.strip()
    return extras if extras in ("llama", "onnx", "agent", "none") else "none"


def adopt_current(remote: RemoteHost, base: str) -> str:
    """The installed wheel (relative to wheels/); a loose wheel left by an older enrollment is
    moved into its folder and becomes current. '' when none is kept."""
    wheels = f"{q(base)}/wheels"
    ran = remote.run(
        f"cd {wheels} 2>/dev/null || exit 0; "
        f"if [ -s current ] && [ -f \"$(cat current)\" ]; then cat current; exit 0; fi; "
        f"f=$(ls -t edgefleet-*.whl 2>/dev/null | head -n 1); [ -n \"$f\" ] || exit 0; "
        f"h=$(sha256sum \"$f\" | cut -c1-16); mkdir -p \"$h\" && mv \"$f\" \"$h/\" && "
        f"printf '%s\\n' \"$h/$f\" > current && cat current")
    return ran.out.strip()


def previous(remote: RemoteHost, base: str) -> str:
    ran = remote.run(f"cd {q(base)}/wheels 2>/dev/null && [ -f \"$(cat previous)\" ] && "
                     "cat previous")
    return ran.out.strip() if ran.code == 0 else ""


def _pip_install(remote: RemoteHost, base: str, rel: str, extras: str,
                 constraints: str = "") -> None:
    """pip-install the wheel ``rel`` with ``extras``; with ``constraints`` (a pip -c file on
    the device) its dependencies at the versions this controller was tested with."""
    path = f"{base}/wheels/{rel}"
    spec = path + ("" if extras == "none" else f"[{extras}]")
    pip = f"{q(base)}/venv/bin/python -m pip --disable-pip-version-check -q"
    pinned = f"-c {q(constraints)} " if constraints else ""
    remote.check(f"{pip} install {pinned}{q(spec)} && {pip} install --force-reinstall "
                 f"--no-deps {q(path)}", "installing the agent", timeout_s=1800)


def install(remote: RemoteHost, base: str, wheel: Wheel, extras: str) -> str:
    """Push ``wheel`` (unless the device holds it), pip-install it into the venv with
    ``extras`` (dependencies pinned: controller.adapters.constraints), then make it current
    and the wheel it replaces previous. Returns the replaced wheel (relative to wheels/, ''
    for a first install)."""
    before = adopt_current(remote, base)
    folder = f"{base}/wheels/{wheel.sha256[:16]}"
    target = f"{base}/wheels/{wheel.rel}"
    if remote.run(f"test -f {q(target)}").code != 0:
        remote.check(f"mkdir -p {q(folder)}", "creating the wheel folder")
        remote.put(wheel.path, target)
    constraints = f"{base}/wheels/constraints.txt"
    remote.write(constraints, constraints_text([] if extras == "none" else [extras]).encode())
    _pip_install(remote, base, wheel.rel, extras, constraints)
    _point(remote, base, current=wheel.rel,
           previous=before if before and before != wheel.rel else previous(remote, base))
    remote.write(f"{base}/extras", f"{extras}\n".encode())
    return before if before != wheel.rel else ""


def reinstall(remote: RemoteHost, base: str, rel: str, extras: str, failed: str) -> None:
    """Go back to the kept wheel ``rel`` (the new one, ``failed``, stays as previous)."""
    _pip_install(remote, base, rel, extras)
    _point(remote, base, current=rel, previous=failed)


def _point(remote: RemoteHost, base: str, current: str, previous: str) -> None:
    wheels = f"{base}/wheels"
    remote.write(f"{wheels}/current", f"{current}\n".encode())
    if previous:
        remote.write(f"{wheels}/previous", f"{previous}\n".encode())
    keep = " ".join(q(r.split("/")[0]) for r in (current, previous) if r)
    # only hash-named folders this module made are pruned
    remote.run(f"cd {q(wheels)} && for d in $(ls -d ????????????????/ 2>/dev/null); do "
               f"d=${{d%/}}; case \" {keep} \" in *\" $d \"*) ;; *) rm -rf -- \"$d\";; esac; "
               "done")
