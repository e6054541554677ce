"""The agent's own GGUF header reader (no numpy, no gguf package) against files the `gguf`
package writes, and against damaged ones: a clear refusal, never a crash or a huge read."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from agent.errors import AdapterMismatch, NotForThisMachine
from agent.gguf_meta import read_meta
from agent.lora import AdapterHeader, check_adapter_fits, read_adapter_header
from controller.testmodels import TinyLoraSpec, write_tiny_lora


@pytest.fixture(scope="module")
def adapter(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("meta") / "a.gguf"
    write_tiny_lora(path, spec=TinyLoraSpec(alpha=32.0))
    return path


def test_reads_what_gguf_wrote(adapter: Path, model_cache: Path) -> None:
    assert read_adapter_header(adapter) == AdapterHeader("llama", 32.0)
    base = model_cache / "tiny-llama" / "tiny-llama-q4_k_m.gguf"
    meta = read_meta(base, ("general.architecture", "llama.block_count", "general.type"))
    assert meta["general.architecture"] == "llama" and meta["llama.block_count"] == 6
    with pytest.raises(AdapterMismatch, match="not a LoRA adapter"):
        read_adapter_header(base)  # a model (its token arrays are skipped on the way)


def test_a_mismatch_names_both_sides() -> None:
    with pytest.raises(AdapterMismatch, match="for a qwen2 base; the model it was to apply "
                                              "to is phi3-mini \\(phi3\\)"):
        check_adapter_fits(AdapterHeader("qwen2", 16.0), "phi3", "phi3-mini")
    check_adapter_fits(AdapterHeader("phi3", 16.0), "phi3")


@pytest.mark.parametrize(("cut", "says"), [
    (lambda b: b"GGML" + b[4:], "no GGUF magic"),
    (lambda b: b[:40], "header ends early"),
    (lambda b: b[:4] + struct.pack("<I", 9) + b[8:], "version 9"),
    (lambda b: b[:24] + struct.pack("<Q", 1 << 40) + b[32:], "byte string"),
    (lambda b: b[:16] + struct.pack("<Q", 1 << 30) + b[24:], "header keys"),
    (lambda b: b"", "header ends early"),
])
def test_damaged_headers_are_refused(adapter: Path, tmp_path: Path, cut: object,
                                     says: str) -> None:
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(cut(adapter.read_bytes()))  # type: ignore[operator]
    with pytest.raises(NotForThisMachine, match=says):
        read_adapter_header(bad)
