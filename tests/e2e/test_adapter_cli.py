"""`fleet adapter add|list` with real GGUF files: an adapter is checked against its base's
header (type, architecture, every adapted tensor's shape) before it is kept; a refused one
leaves nothing behind and says why in one line with a hint."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from controller.testmodels import TinyLlamaSpec, TinyLoraSpec, write_tiny_lora
from tests.conftest import Cli


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    out = {k: tmp_path / f"{k}.gguf" for k in ("kiosk", "kiosk2", "qwen", "wide")}
    write_tiny_lora(out["kiosk"])
    write_tiny_lora(out["kiosk2"], spec=TinyLoraSpec(seed=5))
    write_tiny_lora(out["qwen"], spec=TinyLoraSpec(architecture="qwen2"))
    write_tiny_lora(out["wide"], base=TinyLlamaSpec(n_ff=1024))
    return out


def test_add_checks_and_keeps_the_adapter(cli: Cli, files: dict[str, Path], home: Path) -> None:
    r = cli("adapter", "add", "kiosk", str(files["kiosk"]), "--base", "tiny-llama")
    assert r.code == 0, r.err
    assert "rank 8, alpha 16" in r.out and "attn_q, attn_v, ffn_down, ffn_up" in r.out
    kept = home / "adapters" / "tiny-llama" / "kiosk.gguf"
    assert kept.read_bytes() == files["kiosk"].read_bytes()
    assert cli("adapter", "add", "kiosk", str(files["kiosk"]), "--base", "tiny-llama").code == 0
    listed = json.loads(cli("adapter", "list", "--json").out)["adapters"]
    assert [(a["base"], a["name"], a["rank"]) for a in listed] == [("tiny-llama", "kiosk", 8)]
    assert "kiosk" in cli("adapter", "list").out

    r = cli("adapter", "add", "kiosk", str(files["kiosk2"]), "--base", "tiny-llama")
    assert r.code == 2 and "already has an adapter 'kiosk'" in r.err and "--replace" in r.err
    r = cli("adapter", "add", "kiosk", str(files["kiosk2"]), "--base", "tiny-llama",
            "--replace")
    assert r.code == 0 and kept.read_bytes() == files["kiosk2"].read_bytes()


@pytest.mark.parametrize(("which", "args", "code", "says"), [
    ("qwen", (), 1, "is for a qwen2 base; the base model is llama"),
    ("wide", (), 1, "ffn_down.weight is [2048, 768] in the base"),
    ("base", (), 1, "is not a LoRA adapter (general.type=model"),
    ("kiosk", ("--base", "no-such-model"), 2, "no model named 'no-such-model'"),
    ("missing", (), 2, "no such file"),
    ("kiosk", ("--name", "Bad Name"), 2, "bad adapter name"),
])
def test_refusals_keep_nothing(cli: Cli, files: dict[str, Path], home: Path, model_cache: Path,
                               which: str, args: tuple[str, ...], code: int, says: str) -> None:
    path = {"base": model_cache / "tiny-llama" / "tiny-llama-q2_k.gguf",
            "missing": home / "nope.gguf"}.get(which) or files[which]
    base = args[1] if args[:1] == ("--base",) else "tiny-llama"
    name = args[1] if args[:1] == ("--name",) else "x"
    r = cli("adapter", "add", name, str(path), "--base", base)
    assert r.code == code and says in r.err, r.err
    assert "Traceback" not in r.err and "hint:" in r.err
    assert not any((home / "adapters").glob("*/*"))
