"""Domain dataclasses of the pure core. No I/O library is imported anywhere in ``core``."""

from __future__ import annotations

from dataclasses import dataclass, field

MIB = 1024 * 1024
GIB = 1024 * MIB


@dataclass(frozen=True)
class Profile:
    """A device class, or a device's own probed numbers laid over its class."""

    name: str
    title: str
    kind: str  # "device" | "lab-scale-model"
    arch: str
    cores: int
    isa: tuple[str, ...]
    ram_bytes: int
    reserve_bytes: int
    unified_memory: bool
    bandwidth_gbps: float  # spec sheet
    bandwidth_measured_gbps: float  # 0 when unknown
    gpu: str = ""
    npu: str = ""
    disk_bytes: int = 0
    idle_w: float = 0.0
    load_w: float = 0.0
    scale_of: str = ""  # lab scale models: the real profile they stand in for
    sources: tuple[str, ...] = field(default_factory=tuple)
    compute_gflops: float = 0.0  # peak of the unit that runs the model; 0 = unknown
    accelerated: bool = False  # the runtime offloads to a GPU (decode efficiency differs)
    decode_efficiency: float = 0.0  # calibrated or stated; 0 = default for the backend
    runtimes: tuple[str, ...] = field(default_factory=tuple)  # e.g. "llama.cpp"; () = unknown
    execution_providers: tuple[str, ...] = field(default_factory=tuple)
    # What decides the compute roof (cost model). 0 / "" = unknown: the roof is not applied.
    clock_ghz: float = 0.0  # sustained all-core clock of the cores the runtime uses
    simd_bits: int = 0  # width of one SIMD pipe (128 for NEON, 256 for AVX2 on big cores)
    simd_pipes: float = 0.0  # SIMD pipes per core (mean over the cores the runtime uses)
    threads: int = 0  # threads the runtime uses; 0 = cores
    gpu_backend: str = ""  # cuda | metal | vulkan | opencl: the backend the runtime offloads to
    gpu_tflops: float = 0.0  # peak of the GPU in the precision its matmul kernels use
    gpu_clock_ghz: float = 0.0  # GPU clock of the power mode; 0 = unknown
    cooling: str = ""  # active | passive | "" (unknown: treated as active)
    throttled_clock_ghz: float = 0.0  # sustained clock once a passively cooled board throttles
    bandwidth_method: str = ""  # how bandwidth_measured_gbps was obtained (probe method)
    decode_bandwidth_gbps: float = 0.0  # CPU decode streams this fast on the class (published)
    power_mode: str = ""  # the power mode the numbers are for (Jetson nvpmodel)
    gpu_note: str = ""  # why a declared GPU offload is not predicted (what the agent reported)

    @property
    def usable_bytes(self) -> int:
        return max(0, self.ram_bytes - self.reserve_bytes)

    @property
    def effective_bandwidth_gbps(self) -> float:
        """Measured bandwidth wins over the spec sheet: it is what the device really reaches."""
        return self.bandwidth_measured_gbps or self.bandwidth_gbps

    @property
    def runtime_threads(self) -> int:
        return self.threads or self.cores


@dataclass(frozen=True)
class Architecture:
    """Numbers that decide memory and speed; read from the GGUF header when the file is here."""

    n_layer: int
    n_embd: int
    n_head: int
    n_head_kv: int
    n_ctx_train: int
    n_vocab: int
    params: int  # total parameters
    active_params: int = 0  # MoE: parameters read per token; 0 = all
    head_dim_override: int = 0  # when head_dim != n_embd / n_head (OpenELM, Gemma)
    n_head_kv_layers: tuple[int, ...] = ()  # per-layer KV heads where they vary (OpenELM)
    n_ff: int = 0  # feed-forward width (per expert for MoE); 0 = unknown
    n_expert: int = 0  # MoE: experts per layer; 0 = dense
    n_expert_used: int = 0  # MoE: experts routed per token
    tie_word_embeddings: bool = True  # False: the input embedding is a separate, unread matrix

    @property
    def head_dim(self) -> int:
        if self.head_dim_override or not self.n_head:
            return self.head_dim_override
        return self.n_embd // self.n_head

    @property
    def is_language_model(self) -> bool:
        """False for tensor models (ONNX classifiers...): no KV cache, no tokens."""
        return self.n_layer > 0

    @property
    def kv_heads_total(self) -> int:
        """Sum over layers of KV heads."""
        return sum(self.n_head_kv_layers) or self.n_layer * self.n_head_kv

    @property
    def params_per_token(self) -> int:
        return self.active_params or self.params

    @property
    def is_moe(self) -> bool:
        return self.n_expert > 1 and 0 < self.n_expert_used < self.n_expert

    @property
    def expert_params(self) -> int:
        """Parameters inside the routed experts (all of them), from total and active counts:
        total = shared + E and active = shared + E * used / n_expert."""
        if not self.is_moe or not self.active_params:
            return 0
        share = self.n_expert_used / self.n_expert
        return int((self.params - self.active_params) / (1.0 - share))

    @property
    def input_embedding_params(self) -> int:
        """Parameters of the token-embedding matrix that decode never streams (a lookup of one
        row per token); 0 when it is tied to the output matrix, which every token reads."""
        return 0 if self.tie_word_embeddings else self.n_vocab * self.n_embd


@dataclass(frozen=True)
class Variant:
    name: str  # e.g. q4_k_m
    format: str  # gguf | onnx
    quant: str  # ggml file type, e.g. Q4_K_M
    size_bytes: int
    bits_per_weight: float
    quality_kld: float  # mean KL divergence vs full precision; lower is better
    quality_source: str
    source: str  # hf://repo/file, local://model/file or a path
    sha256: str = ""
    execution_provider: str = ""  # ONNX: the EP this build needs ("" = CPU is enough)
    # Bits per weight of the routed experts when they differ from the rest (MXFP4 experts in
    # a file whose attention is Q8_0); 0 = the file's average.
    expert_bits_per_weight: float = 0.0

    @property
    def runtime(self) -> str:
        return "llama.cpp" if self.format == "gguf" else "onnxruntime"


@dataclass(frozen=True)
class ModelSpec:
    name: str
    title: str
    arch: Architecture
    variants: tuple[Variant, ...]
    default_ctx: int = 2048
    builder: str = ""  # set for models built locally (tiny-llama)
    sources: tuple[str, ...] = field(default_factory=tuple)

    def variant(self, name: str) -> Variant | None:
        return next((v for v in self.variants if v.name == name), None)
