"""Memory estimate against the buffer sizes llama.cpp itself reports.

Tiny llama GGUFs with small and large vocabularies are written here and loaded by the real
llama.cpp (llama-cpp-python, in a subprocess so its log can be read); the KV, output and
compute buffer sizes it prints at load must match ``controller.core.cost``. Then the same
formulas against a published llama.cpp log of a 256k-vocab model.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from controller.adapters.data_files import load_model, load_profile
from controller.core import cost
from controller.core.models import MIB, Architecture, Variant
from controller.core.select import Request, choose

N_EMBD, N_FF, N_LAYER, N_HEAD, N_HEAD_KV = 256, 512, 2, 4, 2


def _write(path: Path, n_vocab: int) -> None:
    import gguf

    tokens = [b"<unk>", b"<s>", b"</s>"] + [f"<0x{i:02X}>".encode() for i in range(256)]
    types = [gguf.TokenType.UNKNOWN, gguf.TokenType.CONTROL, gguf.TokenType.CONTROL]
    types += [gguf.TokenType.BYTE] * 256
    extra = n_vocab - len(tokens)
    tokens += [f"w{i}".encode() for i in range(extra)]
    types += [gguf.TokenType.NORMAL] * extra
    rng = np.random.default_rng(1)

    def w(*shape: int) -> np.ndarray:
        return (rng.standard_normal(shape) * 0.02).astype(np.float32)

    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_context_length(4096)
    writer.add_embedding_length(N_EMBD)
    writer.add_block_count(N_LAYER)
    writer.add_feed_forward_length(N_FF)
    writer.add_head_count(N_HEAD)
    writer.add_head_count_kv(N_HEAD_KV)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_rope_freq_base(10000.0)
    writer.add_rope_dimension_count(N_EMBD // N_HEAD)
    writer.add_file_type(gguf.LlamaFileType.ALL_F32)
    writer.add_tokenizer_model("llama")
    writer.add_token_list(tokens)
    writer.add_token_scores([0.0] * len(tokens))
    writer.add_token_types([int(t) for t in types])
    writer.add_bos_token_id(1)
    writer.add_eos_token_id(2)
    writer.add_unk_token_id(0)
    hd = N_EMBD // N_HEAD
    writer.add_tensor("token_embd.weight", w(n_vocab, N_EMBD))
    writer.add_tensor("output_norm.weight", np.ones(N_EMBD, np.float32))
    writer.add_tensor("output.weight", w(n_vocab, N_EMBD))
    for i in range(N_LAYER):
        p = f"blk.{i}."
        writer.add_tensor(p + "attn_norm.weight", np.ones(N_EMBD, np.float32))
        writer.add_tensor(p + "attn_q.weight", w(N_EMBD, N_EMBD))
        writer.add_tensor(p + "attn_k.weight", w(N_HEAD_KV * hd, N_EMBD))
        writer.add_tensor(p + "attn_v.weight", w(N_HEAD_KV * hd, N_EMBD))
        writer.add_tensor(p + "attn_output.weight", w(N_EMBD, N_EMBD))
        writer.add_tensor(p + "ffn_norm.weight", np.ones(N_EMBD, np.float32))
        writer.add_tensor(p + "ffn_gate.weight", w(N_FF, N_EMBD))
        writer.add_tensor(p + "ffn_up.weight", w(N_FF, N_EMBD))
        writer.add_tensor(p + "ffn_down.weight", w(N_EMBD, N_FF))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def _reported(path: Path, n_ctx: int, n_ubatch: int) -> dict[str, float]:
    """MiB llama.cpp prints for its KV, output and compute buffers when it loads ``path``."""
    code = ("import llama_cpp\n"
            f"llama_cpp.Llama(model_path={str(path)!r}, n_ctx={n_ctx}, n_batch=512, "
            f"n_ubatch={n_ubatch}, n_threads=1, n_gpu_layers=0, verbose=True)\n")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120)
    assert run.returncode == 0, run.stderr[-2000:]
    out = {}
    for key, pattern in (("kv", r"KV buffer size =\s+([\d.]+) MiB"),
                         ("output", r"output buffer size =\s+([\d.]+) MiB"),
                         ("compute", r"compute buffer size =\s+([\d.]+) MiB")):
        found = re.findall(pattern, run.stderr)
        assert found, f"llama.cpp did not report its {key} buffer:\n{run.stderr[-2000:]}"
        out[key] = float(found[-1])
    return out


def _arch(n_vocab: int) -> Architecture:
    return Architecture(n_layer=N_LAYER, n_embd=N_EMBD, n_head=N_HEAD, n_head_kv=N_HEAD_KV,
                        n_ctx_train=4096, n_vocab=n_vocab, params=1, n_ff=N_FF,
                        tie_word_embeddings=False)


@pytest.mark.parametrize(("n_vocab", "n_ctx", "n_ubatch"), [
    (1000, 2048, 512),  # attention scores dominate the compute buffer
    (1000, 2048, 128),
    (32000, 512, 512),  # logits dominate
    (128000, 2048, 512),
    (128000, 2048, 128),
])
def test_buffers_match_what_llama_cpp_allocates(tmp_path: Path, n_vocab: int, n_ctx: int,
                                                n_ubatch: int, monkeypatch: pytest.MonkeyPatch
                                                ) -> None:
    path = tmp_path / f"v{n_vocab}.gguf"
    _write(path, n_vocab)
    got = _reported(path, n_ctx, n_ubatch)
    monkeypatch.setattr(cost, "UBATCH", n_ubatch)
    arch = _arch(n_vocab)
    assert cost.kv_cache_bytes(arch, n_ctx) / MIB == pytest.approx(got["kv"], rel=0.01)
    assert cost.output_buffer_bytes(arch) / MIB == pytest.approx(got["output"], abs=0.02)
    assert cost.compute_buffer_bytes(arch, n_ctx) / MIB == pytest.approx(got["compute"],
                                                                         rel=0.05)


def test_a_published_256k_vocab_log() -> None:
    """llama.cpp CI, commit 1b598b30 (2025-02-06): gemma-1.1-2b-it Q8_0 at n_ctx 4096,
    n_ubatch 512, flash attention off prints KV 72.00 MiB, output 0.98 MiB, compute
    504.00 MiB (ggml-org CI log, public code search). The old estimate added a second
    n_vocab x n_ubatch logits buffer (500 MiB more)."""
    arch = load_model("gemma-2b").arch
    assert cost.kv_cache_bytes(arch, 4096) / MIB == 72.0
    assert cost.output_buffer_bytes(arch) / MIB == pytest.approx(0.98, abs=0.03)
    assert cost.compute_buffer_bytes(arch, 4096) / MIB == pytest.approx(504.0, rel=0.03)


def test_a_256k_vocab_model_fits_where_a_published_run_ran_it() -> None:
    """Gemma-2-9B (256k vocabulary) runs on a Jetson Orin Nano 8 GB (MLC INT4, 7.2 tok/s,
    dusty-nv/jetson-ai-lab docs/benchmarks.md). At the short context of that benchmark and at
    2048 the estimate must not refuse a 4-bit file of its size (4.9 GB)."""
    model = load_model("gemma-2b")  # for the loader only; the architecture is Gemma-2-9B's
    arch = Architecture(n_layer=42, n_embd=3584, n_head=16, n_head_kv=8, n_ctx_train=8192,
                        n_vocab=256000, params=9_241_705_984, head_dim_override=256,
                        n_ff=14336)
    q4 = Variant(name="q4_k_m", format="gguf", quant="Q4_K_M", size_bytes=4_909_656_304,
                 bits_per_weight=4.25, quality_kld=0.031273, quality_source="", source="x")
    spec = model.__class__(name="gemma-2-9b", title="", arch=arch, variants=(q4,))
    nano = load_profile("jetson-orin-nano-8gb")
    for ctx in (512, 2048):
        choice = choose(spec, nano, Request(ctx=ctx))
        assert choice.chosen is not None, choice.reason
