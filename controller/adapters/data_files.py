"""Load hardware profiles and catalog entries from disk: shipped ones, then the user's own,
which override shipped ones by name. A malformed file is refused, naming file and field."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from agent.profile_files import profile_dirs
from controller import settings
from controller.core.catalog import parse_model
from controller.core.models import ModelSpec, Profile
from controller.core.profiles import parse_profile
from controller.errors import InvalidData, UnknownModel, UsageError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


def _read(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        raise InvalidData(f"{path}: not valid TOML ({exc})",
                          hint="fix the file or move it out of the way") from exc


def _load_dir_chain(dirs: list[Path], parse: Any) -> dict[str, Any]:
    """Later directories are lower priority: the first definition of a name wins."""
    found: dict[str, Any] = {}
    for d in dirs:
        if not d.is_dir():
            continue
        for path in sorted(d.glob("*.toml")):
            item = parse(_read(path), str(path))
            if item.name != path.stem:
                raise InvalidData(f"{path}: field 'name' is {item.name!r}, expected {path.stem!r}",
                                  hint="a file's name and its 'name' field must agree")
            found.setdefault(item.name, item)
    return found


def load_profiles() -> dict[str, Profile]:
    dirs = profile_dirs()
    user = settings.fleet_home() / "profiles"
    return _load_dir_chain([*dirs[:-1], user, dirs[-1]], parse_profile)


def load_profile(name: str) -> Profile:
    profiles = load_profiles()
    if name not in profiles:
        raise UsageError(f"no profile named {name!r}",
                         hint="`fleet profile list` shows the known profiles")
    return profiles[name]


def load_catalog() -> dict[str, ModelSpec]:
    return _load_dir_chain([settings.user_catalog_dir(), settings.shipped_catalog_dir()],
                           parse_model)


def load_model(name: str) -> ModelSpec:
    catalog = load_catalog()
    if name not in catalog:
        raise UnknownModel(f"no model named {name!r} in the catalog",
                           hint=f"known models: {', '.join(sorted(catalog))}")
    return catalog[name]
