"""Bytes per decoded token: the output head, tied or not, and the weight formats that store it.

The output projection (n_vocab x n_embd) is read by every decoded token; an untied input
embedding is a one-row lookup and is not. llama.cpp writes the head at Q6_K below Q6_K files;
MLC writes it group-quantized at 4.5 bits in both of its 4-bit formats, while the rest of a
q4f16_ft file is int4 with per-channel scales (~4.0 bits) and the rest of a q4f16_1 file is
group-quantized too (mlc_llm/quantization/ft_quantization.py, quantization.py).
"""

from __future__ import annotations

import pytest

from controller.core import cost, speed
from controller.core.models import Architecture, Variant

VOCAB, EMBD = 151_936, 2048
HEAD = VOCAB * EMBD  # parameters of the head (and of an untied embedding)


def _arch(tied: bool, params: int = 1_840_000_000) -> Architecture:
    return Architecture(n_layer=24, n_embd=EMBD, n_head=16, n_head_kv=16, n_ctx_train=4096,
                        n_vocab=VOCAB, params=params, n_ff=5504, tie_word_embeddings=tied)


def _variant(quant: str, size: int) -> Variant:
    return Variant(name=quant.lower(), format="gguf", quant=quant, size_bytes=size,
                   bits_per_weight=0.0, quality_kld=0.0, quality_source="", source="x")


def test_a_tied_head_is_read_once_and_an_untied_embedding_not_at_all() -> None:
    size = 1_100_000_000
    tied = cost.bytes_read_per_token(_arch(True), _variant("Q4_0", size), n_past=0)
    untied = cost.bytes_read_per_token(_arch(False), _variant("Q4_0", size), n_past=0)
    assert tied == pytest.approx(size)  # every byte of the file, the head once
    # untied: the file minus the input embedding, which llama.cpp keeps at the file type
    head = HEAD * 6.5625 / 8  # output.weight at Q6_K in a Q4_0 file
    rest = (size - head) * (1_840_000_000 - 2 * HEAD) / (1_840_000_000 - HEAD)
    assert untied == pytest.approx(rest + head)
    assert untied < tied - HEAD * 4.0 / 8


def test_mlc_formats_store_the_head_at_group_precision() -> None:
    params = 1_840_000_000
    linear = params - 2 * HEAD
    ft_size = int(linear * 4.0 / 8 + 2 * HEAD * 4.5 / 8)
    ft = _variant("MLC_Q4F16_FT", ft_size)
    # untied FT build: the linear layers at ~4 bits plus the head at 4.5; not the embedding
    assert cost.bytes_read_per_token(_arch(False), ft, n_past=0) == pytest.approx(
        linear * 4.0 / 8 + HEAD * 4.5 / 8, rel=1e-6)
    group = _variant("MLC_Q4F16_1", int(params * 4.5 / 8))
    assert cost.bytes_read_per_token(_arch(True), group, n_past=0) == pytest.approx(
        params * 4.5 / 8, rel=1e-6)


def test_mlc_group_formats_run_their_own_kernels() -> None:
    assert speed.kernel_family("mlc", _variant("MLC_Q4F16_1", 1)) == "mlc-group"
    assert speed.kernel_family("mlc", _variant("MLC_Q4F32_1", 1)) == "mlc-group"
    for ft in ("MLC_Q4F16_FT", "MLC_Q4F16"):  # the generic name is the Jetson AI Lab FT build
        assert speed.kernel_family("mlc", _variant(ft, 1)) == "mlc"
    assert speed.kernel_family("llama.cpp", _variant("Q4_0", 1)) == "llama.cpp"
    assert speed.kernel_family("mlc", None) == "mlc"


def test_the_generic_mlc_name_keeps_the_file_average() -> None:
    """Rows and model files written before the formats were told apart (size derived at one
    average bit width) are read as before: every matrix at the file's average."""
    size = 1_000_000_000
    v = _variant("MLC_Q4F16", size)
    assert speed.output_bits(v) == 0.0
    assert cost.bytes_read_per_token(_arch(True), v, n_past=0) == pytest.approx(size)


def test_prefill_computes_the_head_once_per_prompt() -> None:
    # llama.cpp outputs logits for the last prompt token only: the head's MACs are spread over
    # the prompt, while decode pays them for every token
    w = speed.work(_arch(False), _variant("Q4_0", 1_100_000_000))
    assert w.head_macs == HEAD
    one = speed.prefill_macs(w, 1)
    long = speed.prefill_macs(w, 1000)
    attention = w.attention_macs_per_position * 1000 / 2
    assert one == pytest.approx(w.macs + w.attention_macs_per_position / 2)
    assert long == pytest.approx(w.macs - HEAD + HEAD / 1000 + attention)
    assert long < w.macs  # a 152k-vocabulary head is a fifth of this model's MACs
