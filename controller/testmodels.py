"""Offline test models: a tiny llama GGUF written with ``gguf`` and quantized by llama.cpp.

The ladder (f16, q8_0, q4_k_m, q2_k) is built on this machine in a few seconds, so the demo and
the tests never need the network. Weights are seeded random numbers: the model produces tokens,
not sense. Dimensions are multiples of 256 so the K-quants really apply (no fallback types).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

# llama_ftype ids (llama.h), passed to llama_model_quantize.
FTYPES = {"q8_0": 7, "q4_k_m": 15, "q5_k_m": 17, "q6_k": 18, "q4_0": 2, "q2_k": 10, "q3_k_m": 12}


@dataclass(frozen=True)
class TinyLlamaSpec:
    n_embd: int = 768
    n_ff: int = 2048
    n_layer: int = 6
    n_head: int = 12
    n_head_kv: int = 4
    n_ctx_train: int = 2048
    seed: int = 1234
    # the block count the header declares; 0 = n_layer. More than n_layer is a mis-exported
    # file (its header promises tensors it lacks) that llama.cpp refuses to load
    declared_layers: int = 0
    # NaN: a broken export (output_norm overwritten) that loads and "generates" empty text
    output_norm: float = 1.0


def _vocab() -> tuple[list[bytes], list[float], list[int]]:
    import gguf

    tokens = [b"<unk>", b"<s>", b"</s>"]
    types = [gguf.TokenType.UNKNOWN, gguf.TokenType.CONTROL, gguf.TokenType.CONTROL]
    tokens += [f"<0x{i:02X}>".encode() for i in range(256)]
    types += [gguf.TokenType.BYTE] * 256
    words = ["\u2581the", "\u2581a", "\u2581edge", "\u2581fleet", "\u2581model", "\u2581device",
             "\u2581hello", "\u2581world", "\u2581of", "\u2581and", "\u2581to", "\u2581in",
             "\u2581is", "\u2581on", "\u2581token", "\u2581fast", "\u2581small", "\u2581pi",
             "\u2581jetson", "\u2581kiosk", "\u2581robot", "\u2581phone", "\u2581run",
             "\u2581power", "\u2581energy", "\u2581watt", "\u2581byte", "\u2581quant", "s",
             "ing", "ed", "er", "\u2581"]
    tokens += [w.encode() for w in words]
    types += [gguf.TokenType.NORMAL] * len(words)
    scores = [0.0] * 259 + [-float(i) for i in range(len(words))]
    return tokens, scores, [int(t) for t in types]


def write_tiny_llama_f16(path: Path, spec: TinyLlamaSpec = TinyLlamaSpec()) -> None:
    """Write an F16 llama GGUF at ``path`` (atomically: tmp file, then rename)."""
    import gguf

    tokens, scores, types = _vocab()
    n_vocab = len(tokens)
    head_dim = spec.n_embd // spec.n_head
    rng = np.random.default_rng(spec.seed)

    def w(*shape: int) -> np.ndarray:
        return (rng.standard_normal(shape) * 0.02).astype(np.float16)

    tmp = path.with_suffix(".tmp")
    writer = gguf.GGUFWriter(str(tmp), "llama")
    writer.add_name("tiny-llama")
    writer.add_context_length(spec.n_ctx_train)
    writer.add_embedding_length(spec.n_embd)
    writer.add_block_count(spec.declared_layers or spec.n_layer)
    writer.add_feed_forward_length(spec.n_ff)
    writer.add_head_count(spec.n_head)
    writer.add_head_count_kv(spec.n_head_kv)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_rope_freq_base(10000.0)
    writer.add_rope_dimension_count(head_dim)
    writer.add_file_type(gguf.LlamaFileType.MOSTLY_F16)
    writer.add_tokenizer_model("llama")
    writer.add_token_list(tokens)
    writer.add_token_scores(scores)
    writer.add_token_types(types)
    writer.add_bos_token_id(1)
    writer.add_eos_token_id(2)
    writer.add_unk_token_id(0)
    ones = np.ones(spec.n_embd, dtype=np.float32)
    writer.add_tensor("token_embd.weight", w(n_vocab, spec.n_embd))
    writer.add_tensor("output_norm.weight", np.full(spec.n_embd, spec.output_norm,
                                                    dtype=np.float32))
    # Byte tokens get small output weights so the random model prefers whole words: its text
    # is still nonsense, but readable nonsense.
    output = w(n_vocab, spec.n_embd)
    output[: 3 + 256] *= np.float16(0.05)
    output[3 + 256 :] *= np.float16(4.0)
    writer.add_tensor("output.weight", output)
    kv_dim = spec.n_head_kv * head_dim
    for i in range(spec.n_layer):
        writer.add_tensor(f"blk.{i}.attn_norm.weight", ones)
        writer.add_tensor(f"blk.{i}.attn_q.weight", w(spec.n_embd, spec.n_embd))
        writer.add_tensor(f"blk.{i}.attn_k.weight", w(kv_dim, spec.n_embd))
        writer.add_tensor(f"blk.{i}.attn_v.weight", w(kv_dim, spec.n_embd))
        writer.add_tensor(f"blk.{i}.attn_output.weight", w(spec.n_embd, spec.n_embd))
        writer.add_tensor(f"blk.{i}.ffn_norm.weight", ones)
        writer.add_tensor(f"blk.{i}.ffn_gate.weight", w(spec.n_ff, spec.n_embd))
        writer.add_tensor(f"blk.{i}.ffn_up.weight", w(spec.n_ff, spec.n_embd))
        writer.add_tensor(f"blk.{i}.ffn_down.weight", w(spec.n_embd, spec.n_ff))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    os.replace(tmp, path)


# The projections a tiny LoRA adapts, as PEFT's target_modules usually name them
# (q_proj, v_proj, up_proj, down_proj), in llama.cpp's tensor names.
LORA_TARGETS = ("attn_q", "attn_v", "ffn_up", "ffn_down")


@dataclass(frozen=True)
class TinyLoraSpec:
    rank: int = 8
    alpha: float = 16.0
    seed: int = 4321
    scale: float = 0.1  # standard deviation of the A and B matrices' entries
    architecture: str = "llama"  # the base architecture the header declares


def write_tiny_lora(path: Path, base: TinyLlamaSpec = TinyLlamaSpec(),
                    spec: TinyLoraSpec = TinyLoraSpec()) -> None:
    """Write a GGUF LoRA adapter for the tiny llama at ``path`` (atomically), laid out as
    llama.cpp's ``convert_lora_to_gguf.py`` writes one: ``general.type = adapter``,
    ``adapter.type = lora``, ``adapter.lora.alpha``, and per adapted weight
    ``<tensor>.weight.lora_a`` (rank x n_in) and ``.lora_b`` (n_out x rank), F32, non-zero."""
    import gguf

    rng = np.random.default_rng(spec.seed)
    head_dim = base.n_embd // base.n_head
    kv_dim = base.n_head_kv * head_dim
    shapes = {  # (n_out, n_in) of the base weight, numpy order
        "attn_q": (base.n_embd, base.n_embd),
        "attn_v": (kv_dim, base.n_embd),
        "ffn_up": (base.n_ff, base.n_embd),
        "ffn_down": (base.n_embd, base.n_ff),
    }
    tmp = path.with_suffix(".tmp")
    writer = gguf.GGUFWriter(str(tmp), spec.architecture)
    writer.add_string(gguf.Keys.General.TYPE, gguf.GGUFType.ADAPTER)
    writer.add_name("tiny-llama-lora")
    writer.add_string(gguf.Keys.Adapter.TYPE, "lora")
    writer.add_float32(gguf.Keys.Adapter.LORA_ALPHA, spec.alpha)
    for i in range(base.n_layer):
        for target in LORA_TARGETS:
            n_out, n_in = shapes[target]
            a = (rng.standard_normal((spec.rank, n_in)) * spec.scale).astype(np.float32)
            b = (rng.standard_normal((n_out, spec.rank)) * spec.scale).astype(np.float32)
            writer.add_tensor(f"blk.{i}.{target}.weight.lora_a", a)
            writer.add_tensor(f"blk.{i}.{target}.weight.lora_b", b)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    os.replace(tmp, path)


@contextlib.contextmanager
def native_stderr_to(log: Path) -> Iterator[None]:
    """llama.cpp prints per-tensor progress on fd 2; send it to ``log`` instead."""
    sys.stderr.flush()
    saved = os.dup(2)
    with log.open("ab") as fh:
        os.dup2(fh.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)


def quantize_gguf(src: Path, dst: Path, quant: str, threads: int = 0) -> None:
    """Quantize ``src`` into ``dst`` with llama.cpp (atomically); its log goes beside ``dst``."""
    import llama_cpp

    if quant not in FTYPES:
        raise ValueError(f"unknown quantization {quant!r}; known: {', '.join(sorted(FTYPES))}")
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = FTYPES[quant]
    params.nthread = threads
    tmp = dst.with_suffix(".tmp")
    log = dst.with_suffix(".quantize.log")
    with native_stderr_to(log):
        rc = llama_cpp.llama_model_quantize(str(src).encode(), str(tmp).encode(),
                                            ctypes.byref(params))
    if rc != 0:
        tmp.unlink(missing_ok=True)
        raise RuntimeError(f"llama.cpp quantize {quant} failed with code {rc}; see {log}")
    os.replace(tmp, dst)


def write_tiny_onnx_fp32(path: Path, n_in: int = 64, n_hidden: int = 256, n_out: int = 8,
                         seed: int = 1234) -> None:
    """A small MLP (MatMul, Add, Relu, MatMul, Add) built with ``onnx.helper``."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    inits = [
        numpy_helper.from_array((rng.standard_normal((n_in, n_hidden)) * 0.1)
                                .astype(np.float32), "w1"),
        numpy_helper.from_array(np.zeros(n_hidden, dtype=np.float32), "b1"),
        numpy_helper.from_array((rng.standard_normal((n_hidden, n_out)) * 0.1)
                                .astype(np.float32), "w2"),
        numpy_helper.from_array(np.zeros(n_out, dtype=np.float32), "b2"),
    ]
    nodes = [
        helper.make_node("MatMul", ["input", "w1"], ["h0"]),
        helper.make_node("Add", ["h0", "b1"], ["h1"]),
        helper.make_node("Relu", ["h1"], ["h2"]),
        helper.make_node("MatMul", ["h2", "w2"], ["o0"]),
        helper.make_node("Add", ["o0", "b2"], ["output"]),
    ]
    graph = helper.make_graph(
        nodes, "tiny-mlp",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", n_in])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["batch", n_out])],
        initializer=inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)],
                              producer_name="edgefleet-testmodels")
    model.ir_version = 8
    onnx.checker.check_model(model)
    tmp = path.with_suffix(".tmp")
    onnx.save(model, str(tmp))
    os.replace(tmp, path)


def quantize_onnx_int8(src: Path, dst: Path) -> None:
    """Dynamic int8 quantization with ``onnxruntime.quantization`` (weights int8)."""
    import logging

    from onnxruntime.quantization import QuantType, quantize_dynamic

    tmp = dst.with_name(dst.stem + ".tmp.onnx")
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)  # quantize_dynamic logs a pre-processing advice on root
    try:
        quantize_dynamic(str(src), str(tmp), weight_type=QuantType.QInt8)
    finally:
        root.setLevel(level)
    os.replace(tmp, dst)
