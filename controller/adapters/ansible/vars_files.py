"""``group_vars/`` and ``host_vars/`` beside an inventory, found and read as ansible-core's
``host_group_vars`` plugin does: ``NAME`` (no extension) first, then ``NAME.yml``,
``NAME.yaml``, ``NAME.json``, the first that exists; a directory ``NAME/`` is every file in
it (recursively, sorted; hidden and ``~`` files skipped; extensions .yml/.yaml/.json or none),
merged in that order."""

from __future__ import annotations

from pathlib import Path

from controller.adapters.ansible.model import Var, VarsFiles, error
from controller.adapters.ansible.yaml_load import LineDict, load_yaml

_EXTENSIONS = ("", ".yml", ".yaml", ".json")


class FolderVars(VarsFiles):
    def __init__(self, base: Path) -> None:
        self.base = base
        self.warnings = []
        self._cache: dict[tuple[str, str], dict[str, Var]] = {}

    def group(self, name: str) -> dict[str, Var]:
        return self._load("group_vars", name)

    def host(self, name: str) -> dict[str, Var]:
        return self._load("host_vars", name)

    def _load(self, kind: str, name: str) -> dict[str, Var]:
        key = (kind, name)
        if key not in self._cache:
            self._cache[key] = self._read(self.base / kind, name)
        return self._cache[key]

    def _read(self, folder: Path, name: str) -> dict[str, Var]:
        if name.startswith("/") or not folder.is_dir():
            return {}
        out: dict[str, Var] = {}
        for path in _find(folder, name):
            data = load_yaml(path.read_text(encoding="utf-8"), path)
            if not data:
                continue
            if not isinstance(data, dict):
                raise error(f"{path}:1", f"variables file must be a mapping, got "
                                         f"{type(data).__name__}")
            lines = data.lines if isinstance(data, LineDict) else {}
            for k, v in data.items():
                out[str(k)] = Var(v, f"{path}:{lines.get(k, 1)}")
        return out


def _find(folder: Path, name: str) -> list[Path]:
    for ext in _EXTENSIONS:
        path = folder / f"{name}{ext}"
        if path.exists():
            return _dir_files(path) if path.is_dir() else [path]
    return []


def _dir_files(path: Path) -> list[Path]:
    found: list[Path] = []
    for entry in sorted(path.iterdir(), key=lambda p: p.name):
        if entry.name.startswith(".") or entry.name.endswith("~"):
            continue
        if entry.is_dir() and not entry.suffix:
            found.extend(_dir_files(entry))
        elif entry.is_file() and entry.suffix in _EXTENSIONS:
            found.append(entry)
    return found
