"""The constants of the speed model, each with what it means and where its value comes from.

Two kinds:

- physics: ratios that follow from how the hardware works (SIMD lanes per element width,
  bytes per KV element), stated with their reasoning;
- fitted: efficiencies no datasheet gives (how much of a roof llama.cpp's kernels reach). They
  are fitted by ``controller.core.fitting.fit`` on the rows of
  ``tests/data/published/measurements.csv`` marked ``fit`` and only those (a test re-runs the
  fit and checks these values, and that changing any held-out row changes nothing). Values
  are rounded to three significant digits. Run ``bench/prediction_error.py --fit`` to refit.

A constant without fit rows keeps its documented prior and says so (``FITTED`` lists what the
fit may move).
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace


@dataclass(frozen=True)
class CostConstants:
    # -- CPU decode bandwidth ------------------------------------------------------------
    # Share of a measured single-core streaming figure (the agent's probe, or tinymembench copy
    # traffic) that multi-threaded decode reaches.
    eta_cpu_measured: float = 0.85
    # Share of the spec-sheet bandwidth CPU decode reaches when nothing was measured.
    eta_cpu_spec: float = 0.5
    # -- CPU compute roof: MACs per cycle per core per byte of SIMD issue width -------------
    # Decode is a matrix-vector product: dequantize, dot, reduce. Dot-product ISAs (asimddp,
    # AVX2's vpmaddubsw, AVX-VNNI) do 4 int8 MACs per 32-bit lane per instruction; without them
    # the same work takes widening multiplies and pairwise adds.
    kappa_decode_nodot: float = 0.044
    kappa_decode_dot: float = 0.075
    # Prefill is a matrix-matrix product; i8mm / AVX512-VNNI / AMX run 2x the MACs of a dot
    # instruction per issue (SMMLA: 32 vs SDOT: 16), which ``PREFILL_MATMUL_FACTOR`` applies.
    kappa_prefill_nodot: float = 0.095
    kappa_prefill_dot: float = 0.125
    # -- GPU backends: share of spec bandwidth, per-layer launch/sync overhead (ms), prefill
    # share of peak FLOPS ------------------------------------------------------------------
    eta_metal: float = 0.85
    tau_metal_ms: float = 0.15
    eta_prefill_metal: float = 0.67
    eta_cuda: float = 0.65
    tau_cuda_ms: float = 0.48
    eta_prefill_cuda: float = 0.5
    eta_opencl: float = 0.6
    eta_prefill_opencl: float = 0.3
    # MLC-LLM: its own efficiency and overhead. ``eta_mlc`` is for its FT formats (q4f16_ft:
    # CUTLASS FasterTransformer kernels); ``eta_mlc_group`` for its group-quantized formats
    # (q4f16_1: TVM-generated GEMV kernels), which the same author measured slower on the same
    # board than the byte count alone explains (mlc-ai/mlc-llm#1781). Both share the per-layer
    # overhead: the same graph, the same launches.
    eta_mlc: float = 0.8
    tau_mlc_ms: float = 0.3
    eta_mlc_group: float = 0.8
    # -- Per quantization type kernel cost: Q2_K's MACs on Arm CPUs with dot products cost this
    # much more than the integer rate (``speed.KERNEL_Q2K``). Prior: single-threaded, both
    # Q4_0 and Q2_K are compute bound over the same MACs, so their tok/s ratio is the cost
    # ratio: 1.29 (Pi 5), 1.32 (AGX Orin), 1.48 (M2 Ultra) in microsoft/T-MAC's runs.
    kernel_cost_q2k_arm: float = 1.3
    # -- Mixture of experts: routed expert matrices stream at this share of the dense rate
    # (small per-expert matrices, gather of the selected experts: llama.cpp's mul_mat_id).
    kappa_moe: float = 0.85


# Physics, not fitted.
KV_BYTES_PER_ELEMENT = 2  # f16 K and V, llama.cpp's default cache type
PREFILL_MATMUL_FACTOR = 2.0  # i8mm/VNNI-512/AMX: twice a dot instruction's MACs per issue
# Float weights (F16/BF16/F32) take the float path: an fp16 FMA lane is 2 bytes wide and an
# fp32 one 4 bytes, against 1 byte per int8 lane, so per SIMD byte they do 1/2 (with fp16
# arithmetic: asimdhp, or F16C conversion feeding AVX FMAs counts as fp32) or 1/4 the MACs.
FLOAT_LANES_FP16 = 0.5
FLOAT_LANES_FP32 = 0.25
# Vulkan: no published edge-device rows were found; it shares CUDA's values (an assumption).
VULKAN_LIKE = "cuda"

FITTED = tuple(f.name for f in fields(CostConstants))

# The fitted values (bench/prediction_error.py --fit; checked by tests/unit/test_cost_fit.py).
CONSTANTS = CostConstants(
    eta_cpu_measured=0.853, eta_cpu_spec=0.481, kappa_decode_nodot=0.0543,
    kappa_decode_dot=0.0704, kappa_prefill_nodot=0.102, kappa_prefill_dot=0.111,
    eta_metal=0.846, tau_metal_ms=0.161, eta_prefill_metal=0.653, eta_cuda=0.642,
    tau_cuda_ms=0.637, eta_prefill_cuda=0.5, eta_opencl=0.824, eta_prefill_opencl=0.3,
    eta_mlc=0.973, tau_mlc_ms=0.284, eta_mlc_group=0.891, kernel_cost_q2k_arm=1.25,
    kappa_moe=0.686,
)


def with_values(values: dict[str, float]) -> CostConstants:
    return replace(CONSTANTS, **values)
