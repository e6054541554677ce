"""`fleet model add` and `fleet model quantize` on real GGUF files, air-gapped."""

from __future__ import annotations

import json
from pathlib import Path

from tests.conftest import Cli


def test_add_reads_the_gguf_header_and_quantize_builds_variants(cli: Cli, home: Path,
                                                                tmp_path: Path) -> None:
    src = home / "models" / "tiny-llama" / "tiny-llama-f16.gguf"
    outside = tmp_path / "my-model.gguf"
    outside.write_bytes(src.read_bytes())
    result = cli("model", "add", "my-model", str(outside), "--title", "My model")
    assert result.code == 0, result.err
    assert "6 layers, embd 768, 12/4 heads, ctx 2048" in result.out
    shown = json.loads(cli("model", "show", "my-model", "--json").out)
    assert shown["arch"]["n_vocab"] == 292
    assert [v["name"] for v in shown["variants"]] == ["f16"]

    result = cli("model", "quantize", "my-model", "--from", "f16", "--to", "q8_0,q5_k_m")
    assert result.code == 0, result.err
    shown = json.loads(cli("model", "show", "my-model", "--json").out)
    sizes = {v["name"]: v["size_bytes"] for v in shown["variants"]}
    assert set(sizes) == {"f16", "q8_0", "q5_k_m"}
    assert sizes["f16"] > sizes["q8_0"] > sizes["q5_k_m"]
    assert all(len(v["sha256"]) == 64 for v in shown["variants"])
    listed = json.loads(cli("model", "list", "--json").out)["variants"]
    mine = [r for r in listed if r["model"] == "my-model"]
    assert all(r["local"] for r in mine) and len(mine) == 3
    assert (home / "catalog" / "my-model.toml").exists()


def test_add_refuses_bad_input(cli: Cli, tmp_path: Path) -> None:
    missing = cli("model", "add", "x", str(tmp_path / "nope.gguf"))
    assert missing.code == 2 and missing.err.startswith("error: no such file")
    junk = tmp_path / "junk.gguf"
    junk.write_bytes(b"not a gguf at all")
    bad = cli("model", "add", "x", str(junk))
    assert bad.code == 1 and "not a readable GGUF" in bad.err
    unknown = cli("model", "quantize", "tiny-llama", "--to", "q9_z")
    assert unknown.code == 2 and "unknown quantization q9_z" in unknown.err


def test_quantize_an_onnx_model_to_int8(cli: Cli, home: Path, tmp_path: Path) -> None:
    import shutil

    src = home / "models" / "tiny-mlp" / "tiny-mlp-fp32.onnx"
    catalog = home / "catalog"
    catalog.mkdir()
    # a user model with only the fp32 variant, as after `fleet model import`
    (catalog / "my-mlp.toml").write_text(f"""
name = "my-mlp"
title = "my MLP"
default_ctx = 1
sources = ["test"]
[arch]
n_layer = 0
n_embd = 0
n_head = 0
n_head_kv = 0
n_ctx_train = 1
n_vocab = 0
params = 18696
[[variants]]
name = "fp32"
format = "onnx"
quant = "FP32"
size_bytes = {src.stat().st_size}
quality_kld = 0.0
quality_source = "full precision"
source = "local://my-mlp/my-mlp-fp32.onnx"
""")
    (home / "models" / "my-mlp").mkdir()
    shutil.copyfile(src, tmp_path / "in.onnx")
    assert cli("model", "import", "my-mlp", "fp32", str(tmp_path / "in.onnx")).code == 0
    result = cli("model", "quantize", "my-mlp", "--from", "fp32", "--to", "int8")
    assert result.code == 0, result.err
    shown = json.loads(cli("model", "show", "my-mlp", "--json").out)
    sizes = {v["name"]: v["size_bytes"] for v in shown["variants"]}
    assert sizes["int8"] < sizes["fp32"]
    bad = cli("model", "quantize", "my-mlp", "--from", "fp32", "--to", "q4_k_m")
    assert bad.code == 2 and "int8 only" in bad.err
