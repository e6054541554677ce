"""Typed field access over parsed TOML that names the file, the field and what was expected."""

from __future__ import annotations

from typing import Any

from controller.errors import InvalidData


class Fields:
    def __init__(self, data: dict[str, Any], origin: str, prefix: str = "") -> None:
        self.data = data
        self.origin = origin
        self.prefix = prefix

    def _fail(self, key: str, expected: str, got: object) -> InvalidData:
        field = f"{self.prefix}{key}"
        return InvalidData(
            f"{self.origin}: field '{field}' must be {expected}, got {got!r}",
            hint="fix the file or remove it; `fleet profile list` and `fleet model list` "
            "show what loads",
        )

    def section(self, key: str, required: bool = True) -> Fields:
        value = self.data.get(key)
        if value is None and not required:
            return Fields({}, self.origin, f"{self.prefix}{key}.")
        if not isinstance(value, dict):
            raise self._fail(key, "a table", value if value is not None else "nothing")
        return Fields(value, self.origin, f"{self.prefix}{key}.")

    def text(self, key: str, default: str | None = None) -> str:
        value = self.data.get(key, default)
        if not isinstance(value, str) or (default is None and not value):
            raise self._fail(key, "a non-empty string", value)
        return value

    def number(self, key: str, default: float | None = None, minimum: float = 0) -> float:
        value = self.data.get(key, default)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value < minimum:
            raise self._fail(key, f"a number >= {minimum:g}", value)
        return float(value)

    def whole(self, key: str, default: int | None = None, minimum: int = 0) -> int:
        value = self.data.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise self._fail(key, f"a whole number >= {minimum}", value)
        return value

    def flag(self, key: str, default: bool) -> bool:
        value = self.data.get(key, default)
        if not isinstance(value, bool):
            raise self._fail(key, "true or false", value)
        return value

    def texts(self, key: str) -> tuple[str, ...]:
        value = self.data.get(key, [])
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise self._fail(key, "a list of strings", value)
        return tuple(value)

    def tables(self, key: str) -> list[Fields]:
        value = self.data.get(key)
        if not isinstance(value, list) or not value or not all(isinstance(v, dict) for v in value):
            raise self._fail(key, "a non-empty array of tables", value)
        return [Fields(v, self.origin, f"{self.prefix}{key}[{i}].") for i, v in enumerate(value)]
