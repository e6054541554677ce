"""The versions the agent was tested with, for pip on a device (``pip install -c FILE``).

Enrollment installs the agent's dependencies on the device; unpinned, pip takes whatever is
newest that day, which is not what this controller's test suite ran. The constraints file is
generated from this controller's own environment: every distribution the agent's
requirements reach (for the extras being installed, through their dependencies), at the
version installed here. The runtimes themselves (llama-cpp-python, onnxruntime, numpy under
them) are left out: they are built for the device (a JetPack or Raspberry Pi build, reused
from the system site packages) and must not be replaced by the controller's x86 choice.
"""

from __future__ import annotations

import importlib.metadata as metadata
from collections.abc import Iterable

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name

DIST = "edgefleet"
# built for the device; never pinned to the controller's build
DEVICE_BUILT = frozenset({"llama-cpp-python", "onnxruntime", "onnxruntime-gpu", "numpy"})


def _applies(req: Requirement, extras: Iterable[str]) -> bool:
    if req.marker is None:
        return True
    return any(req.marker.evaluate({"extra": e}) for e in [*extras, ""])


def pinned(extras: Iterable[str] = ()) -> dict[str, str]:
    """{distribution: version} for the agent with ``extras``, from this environment."""
    found: dict[str, str] = {}
    todo: list[tuple[str, tuple[str, ...]]] = [(DIST, tuple(extras))]
    seen: set[tuple[str, tuple[str, ...]]] = set()
    while todo:
        name, wanted = todo.pop()
        if (name, wanted) in seen:
            continue
        seen.add((name, wanted))
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            continue  # not installed here (e.g. for another Python): left to pip
        key = canonicalize_name(name)
        if name != DIST and key not in DEVICE_BUILT:
            found[key] = dist.version
        for line in dist.requires or []:
            try:
                req = Requirement(line)
            except InvalidRequirement:
                continue
            if _applies(req, wanted):
                todo.append((req.name, tuple(sorted(req.extras))))
    return dict(sorted(found.items()))


def constraints_text(extras: Iterable[str] = ()) -> str:
    versions = pinned(extras)
    return ("# edgefleet agent: the versions this controller was tested with (pip -c)\n"
            + "".join(f"{name}=={version}\n" for name, version in versions.items()))
