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

    @property
    def usable_bytes(self) -> int:
        return max(0, self.ram_bytes - self.reserve_bytes)

    @property
    def effective_bandwidth_gbps(self) -> float:
        return self.bandwidth_gbps or self.bandwidth_measured_gbps


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
