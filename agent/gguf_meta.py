"""Read a GGUF file's header key/values without llama.cpp or the ``gguf`` package.

The agent checks a LoRA adapter against its base before any runtime sees it (a mismatch
inside llama.cpp is only a line in its log and a NULL), and a Raspberry Pi has neither numpy
nor ``gguf``. Layout (GGUF v2/v3, little-endian): ``GGUF``, u32 version, u64 tensor count,
u64 key/value count, then each key (u64 length + UTF-8) with a u32 type and its value.
Arrays are skipped; reading stops as soon as every wanted key was seen.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable
from pathlib import Path
from typing import BinaryIO

from agent.errors import NotForThisMachine

_SCALARS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?",
            10: "<Q", 11: "<q", 12: "<d"}
_STRING, _ARRAY = 8, 9
MAX_STRING = 1 << 20  # no header string of a real file comes near a MiB
MAX_KV = 1 << 16

Value = int | float | bool | str


class _Reader:
    def __init__(self, fh: BinaryIO, path: Path) -> None:
        self._fh, self._path = fh, path

    def bad(self, why: str) -> NotForThisMachine:
        return NotForThisMachine(f"{self._path.name}: not a GGUF file ({why})")

    def take(self, n: int) -> bytes:
        data = self._fh.read(n)
        if len(data) != n:
            raise self.bad("header ends early")
        return data

    def unpack(self, fmt: str) -> int | float | bool:
        value: int | float | bool = struct.unpack(fmt, self.take(struct.calcsize(fmt)))[0]
        return value

    def string(self) -> str:
        n = int(self.unpack("<Q"))
        if n > MAX_STRING:
            raise self.bad(f"a {n}-byte string")
        return self.take(n).decode("utf-8", errors="replace")

    def value(self, kind: int) -> Value | None:
        if kind in _SCALARS:
            return self.unpack(_SCALARS[kind])
        if kind == _STRING:
            return self.string()
        if kind == _ARRAY:
            item, count = int(self.unpack("<I")), int(self.unpack("<Q"))
            if item in _SCALARS:
                self._fh.seek(struct.calcsize(_SCALARS[item]) * count, 1)
            elif item == _STRING:
                for _ in range(count):
                    self.string()
            else:
                raise self.bad(f"array of type {item}")
            return None
        raise self.bad(f"value type {kind}")


def read_meta(path: Path, wanted: Iterable[str]) -> dict[str, Value]:
    """The wanted keys that the header holds (arrays are not returned)."""
    want = set(wanted)
    found: dict[str, Value] = {}
    try:
        with path.open("rb") as fh:
            r = _Reader(fh, path)
            if r.take(4) != b"GGUF":
                raise r.bad("no GGUF magic")
            version = int(r.unpack("<I"))
            if version not in (2, 3):
                raise r.bad(f"version {version}")
            r.unpack("<Q")  # tensor count
            n_kv = int(r.unpack("<Q"))
            if n_kv > MAX_KV:
                raise r.bad(f"{n_kv} header keys")
            for _ in range(n_kv):
                key = r.string()
                value = r.value(int(r.unpack("<I")))
                if key in want and value is not None:
                    found[key] = value
                    if len(found) == len(want):
                        break
    except OSError as exc:
        raise NotForThisMachine(f"{path.name}: cannot read its header ({exc})") from exc
    return found
