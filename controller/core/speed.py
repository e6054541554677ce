"""Decode and prefill speed of a variant on a device: roofs, overheads, backends.

Decode time per token is the slower of two roofs plus a fixed per-layer cost::

    t = max(bytes / bandwidth, MACs / compute) + n_layer x tau

- bytes: the weights each token streams (all of a dense model except an untied input
  embedding, which is a one-row lookup; for a mixture of experts the shared weights plus the
  routed experts' share, inflated by the routing inefficiency ``kappa_moe``) plus the KV cache
  read so far;
- bandwidth: on a GPU backend the spec sheet times that backend's efficiency; on the CPU, in
  order, the class's published decode bandwidth, the probe's (or a published) measurement
  times ``eta_cpu_measured``, the spec sheet times ``eta_cpu_spec``;
- compute: on a GPU backend its peak matrix rate (a true roof, binding only a weak GPU on
  wide memory); on the CPU
  threads x clock x SIMD bytes per cycle x a kernel efficiency that
  depends on whether the ISA has int8 dot-product instructions; float weights get fewer lanes;
  a quantization type whose kernel costs more per MAC on that ISA divides the rate by its
  cost (``kernel_cost``: Q2_K on Arm with dot products); a passively cooled board runs at
  its throttled clock;
- tau: kernel launch / synchronisation cost per layer of a GPU backend.

Prefill is compute bound: 2 FLOPs per active parameter per token plus attention over the
prompt so far (the output head once per prompt), against the CPU's matrix rate or the GPU's
peak times its prefill efficiency.

A device calibrated by ``fleet device calibrate`` (``Profile.decode_efficiency``) prices its
bytes from its own measurement instead (that share of its roof bandwidth over the bytes per
token); the compute roof still applies.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from controller.core.cost_constants import (
    CONSTANTS,
    FLOAT_LANES_FP16,
    FLOAT_LANES_FP32,
    KV_BYTES_PER_ELEMENT,
    PREFILL_MATMUL_FACTOR,
    CostConstants,
)
from controller.core.models import Architecture, Profile, Variant

FLOAT_QUANTS = frozenset({"F16", "BF16", "F32", "FP16", "FP32"})
BACKENDS = ("cpu", "cuda", "metal", "vulkan", "opencl")
DEFAULT_RUNTIME = "llama.cpp"


def kernel_class(profile: Profile) -> str:
    """``mm`` (int8 matrix-multiply instructions), ``dot`` (int8 dot products) or ``nodot``."""
    isa = {f.lower() for f in profile.isa}
    if isa & {"i8mm", "avx512_vnni", "avx512vnni", "amx_int8", "amx"}:
        return "mm"
    if isa & {"asimddp", "dotprod", "avx2", "avx_vnni", "avxvnni"}:
        return "dot"
    return "nodot"


def has_fp16_arithmetic(profile: Profile) -> bool:
    return bool({f.lower() for f in profile.isa} & {"asimdhp", "fphp", "avx512_fp16"})


@dataclass(frozen=True)
class Work:
    """What one variant asks of any device, per token."""

    weight_bytes: float  # streamed per decoded token (MoE: with the routing inefficiency)
    kv_bytes_per_position: float
    macs: float  # linear-layer multiply-accumulates per token (active parameters)
    attention_macs_per_position: float
    n_layer: int
    is_float: bool
    kernel: str = ""  # the integer kernel family whose cost may differ by ISA (quant_kernel)
    head_macs: float = 0.0  # the output head's share of ``macs`` (logits: once per prompt)

    def bytes_at(self, n_past: int) -> float:
        """Bytes a decoded token streams at context position ``n_past``."""
        return self.weight_bytes + self.kv_bytes_per_position * n_past

    def macs_at(self, n_past: int) -> float:
        """MACs a decoded token computes at context position ``n_past``."""
        return self.macs + self.attention_macs_per_position * n_past


# Integer kernel families with a cost of their own on some ISAs (``Rates.kernel_cost``).
# Without int8 dot products every integer type costs about the same per value (Cortex-A72,
# llama.cpp test-quantize-perf vec_dot_q: q8_0 9.51, q4_K 9.26, q2_K 9.79 GB/s of f32 input,
# ggml-org/llama.cpp#8151). With them, Q2_K's unpacking (2-bit values, 4-bit scales and mins
# per 16) costs more than the dot products themselves: single-threaded llama.cpp decodes a
# Q2_K Llama-2-7B slower than its Q4_0 with fewer bytes (0.66 vs 0.85 tok/s on a Pi 5, 0.79
# vs 1.04 on an AGX Orin, 3.82 vs 5.65 on an M2 Ultra; microsoft/T-MAC
# docs/profiling_data.md, llama.cpp b2794). On x86 (AVX2) no such cost was found (a
# 180M-parameter model on this project's CI host decoded Q2_K in 0.73-0.79 of Q4_0's time,
# bench/kernel_cost.py; T-MAC's Surface Book 3: Q2_K 2.70 vs Q4_0 2.50 tok/s on one thread),
# so the cost applies to Arm only; other types have no published per-type figure and cost 1.
KERNEL_Q2K = "q2_k"
ARM_ARCHES = frozenset({"aarch64", "arm64"})  # Linux, Android: aarch64; macOS arm64, Windows ARM64


def quant_kernel(variant: Variant) -> str:
    """The kernel family of ``variant``'s integer weights with a cost of its own, or ""."""
    return KERNEL_Q2K if variant.format == "gguf" and variant.quant.upper().startswith(
        "Q2_K") else ""


# MLC-LLM weight formats (mlc_llm/quantization/quantization.py). Both 4-bit formats store the
# token embedding (the output head when tied) and an untied final projection as group-32 int4
# with an f16 scale per group, 4.5 bits; they differ in the other linear layers and so in the
# kernels that read them:
# - q4f16_ft: int4 with one f16 scale per output channel (~4.0 bits), read by CUTLASS
#   FasterTransformer mixed-precision kernels; the Jetson AI Lab builds;
# - q4f16_1 (and the other q*f*_N group formats): group-32 int4 everywhere, read by
#   TVM-generated GEMV kernels; the prebuilt mlc-ai models, and the only 4-bit format for
#   architectures without FT support (Gemma-2: ``supports_ft_quant=False``).
# ``MLC_Q4F16`` (no suffix) is read as the FT build, the Jetson AI Lab default.
MLC_FT_QUANTS = frozenset({"MLC_Q4F16", "MLC_Q4F16_FT", "MLC_Q8F16_FT"})
MLC_GROUP_BITS = 4.5  # group-32 int4 + one f16 scale per group


def is_mlc_group_quant(variant: Variant) -> bool:
    q = variant.quant.upper()
    return q.startswith("MLC_") and q not in MLC_FT_QUANTS


def kernel_family(runtime: str, variant: Variant | None) -> str:
    """The runtime whose kernels decode ``variant``: MLC's group-quantized formats run
    TVM-generated kernels (``mlc-group``), its FT formats CUTLASS ones (``mlc``)."""
    if runtime == "mlc" and variant is not None and is_mlc_group_quant(variant):
        return "mlc-group"
    return runtime


def output_bits(variant: Variant) -> float:
    """Bits per weight of the output matrix (or the tied embedding that serves as it).

    llama.cpp's quantizer writes it at Q6_K for every file type below Q6_K, at Q8_0 for
    Q8_0, at the file's own precision above (``llama_tensor_get_type``). MLC's 4-bit formats
    write it group-quantized at 4.5 bits (``MLC_GROUP_BITS``). 0 = treat it like the rest of
    the file (other formats, and the generic ``MLC_Q4F16`` whose file size was derived at one
    average).
    """
    q = variant.quant.upper()
    if q.startswith("MLC_Q4") and q != "MLC_Q4F16":
        return MLC_GROUP_BITS + (0.5 if q.startswith("MLC_Q4F32") else 0.0)  # f32 scales
    if variant.format != "gguf" or q.startswith("MLC"):
        return 0.0
    return {"F32": 32.0, "F16": 16.0, "BF16": 16.0, "Q8_0": 8.5}.get(q, 6.5625)


def work(arch: Architecture, variant: Variant, c: CostConstants = CONSTANTS) -> Work:
    """Bytes streamed and MACs per token, from the file size split by what llama.cpp keeps at
    which precision: the output matrix at ``output_bits``, MoE experts at their own bits when
    the variant says so, the rest at the file's remaining average."""
    params = float(max(arch.params, 1))
    size = float(variant.size_bytes)
    vocab = float(arch.n_vocab * arch.n_embd) if arch.is_language_model else 0.0
    out_bytes = vocab * output_bits(variant) / 8
    n_emb = 1 if arch.tie_word_embeddings else 2
    if vocab and out_bytes and out_bytes <= 0.5 * size and n_emb * vocab < params:
        # output matrix at its own precision; an untied input embedding at the rest's average
        # (llama.cpp: its file type's default) or, in MLC files, at the output's precision
        rest_params = params - n_emb * vocab
        if variant.quant.upper().startswith("MLC_"):
            rest_bytes = size - n_emb * out_bytes
        else:
            rest_bytes = (size - out_bytes) * rest_params / (params - vocab)
    else:  # tensor models, tiny test models: every weight at the file's average
        unread = vocab if not arch.tie_word_embeddings else 0.0
        rest_params = params - unread - vocab
        rest_bytes = size * rest_params / params
        out_bytes = size * vocab / params
    experts = float(min(arch.expert_params, rest_params)) if arch.is_moe else 0.0
    if experts:
        expert_bytes = (experts * variant.expert_bits_per_weight / 8
                        if variant.expert_bits_per_weight else rest_bytes * experts / rest_params)
        expert_bytes = min(expert_bytes, rest_bytes)
        share = arch.n_expert_used / arch.n_expert
        streamed = (rest_bytes - expert_bytes) + expert_bytes * share / c.kappa_moe + out_bytes
        macs = (rest_params - experts) + experts * share + vocab
    else:
        active = arch.active_params / params if arch.active_params else 1.0
        streamed = rest_bytes * active + out_bytes
        macs = rest_params * active + vocab
    q_width = arch.n_head * arch.head_dim
    return Work(
        weight_bytes=max(streamed, 1.0),
        kv_bytes_per_position=float(arch.kv_heads_total * arch.head_dim * 2
                                    * KV_BYTES_PER_ELEMENT),
        macs=max(macs, 1.0),
        attention_macs_per_position=float(2 * arch.n_layer * q_width),
        n_layer=arch.n_layer,
        is_float=variant.quant.upper() in FLOAT_QUANTS,
        kernel=quant_kernel(variant),
        head_macs=vocab,
    )


@dataclass(frozen=True)
class Rates:
    """What one device (with one backend and runtime) delivers."""

    bandwidth: float  # bytes/s decode streams at
    roof_bandwidth: float  # bytes/s the calibration share applies to
    int_macs: float  # MAC/s of the integer decode kernels; 0 = no compute roof
    float_macs: float
    layer_overhead_s: float
    prefill_int_macs: float  # MAC/s in prefill; 0 = unknown
    prefill_float_macs: float
    calibrated: float  # Profile.decode_efficiency (0: not calibrated)
    # integer kernel family -> cost per MAC relative to the integer rates (absent: 1)
    kernel_cost: Mapping[str, float] = field(default_factory=dict)


def backend_of(profile: Profile) -> str:
    return profile.gpu_backend if profile.accelerated and profile.gpu_backend else "cpu"


def cpu_bandwidth(profile: Profile, c: CostConstants = CONSTANTS,
                  use_class_figure: bool = True) -> float:
    """Bytes/s CPU decode streams: published class figure, measured, or spec (in that order)."""
    if use_class_figure and profile.decode_bandwidth_gbps > 0:
        return profile.decode_bandwidth_gbps * 1e9
    if profile.bandwidth_measured_gbps > 0:
        return c.eta_cpu_measured * profile.bandwidth_measured_gbps * 1e9
    return c.eta_cpu_spec * profile.bandwidth_gbps * 1e9


def _gpu(backend: str, runtime: str, c: CostConstants) -> tuple[float, float, float]:
    """(bandwidth efficiency, per-layer overhead s, prefill efficiency) of a GPU backend."""
    if runtime == "mlc":
        return c.eta_mlc, c.tau_mlc_ms, c.eta_prefill_cuda
    if runtime == "mlc-group":  # same launches per layer, slower GEMV kernels
        return c.eta_mlc_group, c.tau_mlc_ms, c.eta_prefill_cuda
    if backend == "metal":
        return c.eta_metal, c.tau_metal_ms, c.eta_prefill_metal
    if backend == "opencl":
        return c.eta_opencl, c.tau_cuda_ms, c.eta_prefill_opencl
    return c.eta_cuda, c.tau_cuda_ms, c.eta_prefill_cuda  # cuda, vulkan (assumed)


def rates(profile: Profile, *, backend: str | None = None, runtime: str = DEFAULT_RUNTIME,
          threads: int = 0, c: CostConstants = CONSTANTS,
          use_class_figure: bool = True) -> Rates:
    backend = backend or backend_of(profile)
    runtime = "llama.cpp" if runtime in ("", "ollama", "llamafile", "cactus") else runtime
    if backend != "cpu":
        eta, tau_ms, eta_pre = _gpu(backend, runtime, c)
        # per-layer time is kernel launches plus small kernels: it shrinks with the GPU clock
        # (tau is stated at 1 GHz; a profile without a GPU clock takes it as is)
        tau = tau_ms / 1000 / (profile.gpu_clock_ghz or 1.0)
        spec = profile.bandwidth_gbps * 1e9
        peak_macs = profile.gpu_tflops * 1e12 / 2
        gpu_macs = peak_macs * eta_pre
        # decode's compute roof on a GPU is its peak matrix rate, a true roof (no efficiency
        # to fit): far above the memory roof on every profile here, it binds a weak GPU only
        return Rates(bandwidth=eta * spec, roof_bandwidth=spec, int_macs=peak_macs,
                     float_macs=peak_macs, layer_overhead_s=tau, prefill_int_macs=gpu_macs,
                     prefill_float_macs=gpu_macs, calibrated=profile.decode_efficiency)
    bandwidth = cpu_bandwidth(profile, c, use_class_figure)
    roof = (profile.effective_bandwidth_gbps * 1e9) or bandwidth
    n = threads or profile.runtime_threads
    clock = profile.clock_ghz
    if profile.cooling == "passive" and profile.throttled_clock_ghz > 0:
        clock = min(clock, profile.throttled_clock_ghz)
    simd_bytes = profile.simd_bits / 8 * profile.simd_pipes
    issue = n * clock * 1e9 * simd_bytes  # SIMD bytes per second over the threads
    kind = kernel_class(profile)
    kappa_dec = c.kappa_decode_nodot if kind == "nodot" else c.kappa_decode_dot
    kappa_pre = c.kappa_prefill_nodot if kind == "nodot" else c.kappa_prefill_dot
    mm = PREFILL_MATMUL_FACTOR if kind == "mm" else 1.0
    # without int8 dot products the integer path is itself emulated at about fp32 FMA width
    lanes = (FLOAT_LANES_FP16 if has_fp16_arithmetic(profile) or kind == "nodot"
             else FLOAT_LANES_FP32)
    kernel_cost = ({KERNEL_Q2K: c.kernel_cost_q2k_arm}
                   if kind != "nodot" and profile.arch.lower() in ARM_ARCHES else {})
    return Rates(bandwidth=bandwidth, roof_bandwidth=roof, int_macs=kappa_dec * issue,
                 float_macs=kappa_dec * issue * lanes, layer_overhead_s=0.0,
                 prefill_int_macs=kappa_pre * issue * mm,
                 prefill_float_macs=kappa_pre * issue * lanes, calibrated=profile.decode_efficiency,
                 kernel_cost=kernel_cost)


def int_rate(rate: float, kernel: str, r: Rates) -> float:
    """An integer MAC rate of ``r`` for weights of kernel family ``kernel``."""
    return rate / r.kernel_cost[kernel] if kernel and kernel in r.kernel_cost else rate


def prefill_rate(r: Rates, is_float: bool, kernel: str) -> float:
    """MAC/s of prefill for float or integer weights of kernel family ``kernel``."""
    return r.prefill_float_macs if is_float else int_rate(r.prefill_int_macs, kernel, r)


def decode_seconds_at(bytes_: float, macs: float, n_layer: int, is_float: bool,
                      r: Rates, kernel: str = "") -> float:
    """Seconds per token for ``bytes_`` streamed and ``macs`` computed (the roofs, flat: a
    fleet plan calls this for every device and variant)."""
    rate = r.float_macs if is_float else int_rate(r.int_macs, kernel, r)
    compute = macs / rate if rate > 0 else 0.0
    if r.calibrated > 0 and r.roof_bandwidth > 0:
        # the device's measured share of its roof prices the bytes (per-layer overheads
        # included); the compute roof still holds, so a calibration on one variant does not
        # make a compute-bound one (Q2_K on one Arm core, F16 on an A72) look fast
        return max(bytes_ / (r.calibrated * r.roof_bandwidth), compute)
    if r.bandwidth <= 0:
        return 0.0
    return max(bytes_ / r.bandwidth, compute) + n_layer * r.layer_overhead_s


def decode_seconds(w: Work, r: Rates, n_past: int) -> float:
    """Seconds per decoded token at context position ``n_past``; 0 when unknown."""
    return decode_seconds_at(w.bytes_at(n_past), w.macs_at(n_past), w.n_layer, w.is_float, r,
                             w.kernel)


def decode_tps(w: Work, r: Rates, n_past: int) -> float:
    t = decode_seconds(w, r, n_past)
    return 1.0 / t if t > 0 else 0.0


def prefill_macs(w: Work, prompt_tokens: int) -> float:
    """MACs per prompt token: the linear layers plus attention over half the prompt, and the
    output head once for the whole prompt (llama.cpp computes logits for the last prompt
    token only: a batch without per-token logit flags outputs the last one)."""
    n = max(prompt_tokens, 1)
    return (w.macs - w.head_macs + w.head_macs / n
            + w.attention_macs_per_position * prompt_tokens / 2)


def prefill_tps(w: Work, r: Rates, prompt_tokens: int) -> float:
    """Prompt tokens per second for a prompt of ``prompt_tokens``; 0 when unknown."""
    rate = prefill_rate(r, w.is_float, w.kernel)
    return rate / prefill_macs(w, prompt_tokens) if rate > 0 else 0.0
