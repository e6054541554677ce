"""Where hardware profile files live, and reading one as plain data.

Shipped profiles sit in the repository's ``profiles/`` (or ``edgefleet_profiles`` when installed
from a wheel); a user's own live in ``$FLEET_PROFILES_DIR`` and override shipped ones by name.
The controller validates profiles; the agent only needs a few fields to emulate one.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


def shipped_profiles_dir() -> Path:
    repo = Path(__file__).resolve().parent.parent / "profiles"
    if repo.is_dir():
        return repo
    try:
        import edgefleet_profiles  # type: ignore[import-not-found,import-untyped,unused-ignore]

        return Path(edgefleet_profiles.__path__[0])
    except ImportError:
        return repo


def profile_dirs() -> list[Path]:
    """Search order: user directory first (overrides), then shipped profiles."""
    dirs = []
    user = os.environ.get("FLEET_PROFILES_DIR")
    if user:
        dirs.append(Path(user))
    dirs.append(shipped_profiles_dir())
    return dirs


def find_profile_file(name_or_path: str) -> Path | None:
    candidate = Path(name_or_path)
    if candidate.suffix == ".toml" and candidate.is_file():
        return candidate
    for d in profile_dirs():
        path = d / f"{name_or_path}.toml"
        if path.is_file():
            return path
    return None


def read_toml(path: Path) -> dict[str, Any]:
    with path.open("rb") as fh:
        return tomllib.load(fh)
