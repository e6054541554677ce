"""ONNX models through onnxruntime, on the best execution provider present (CPU fallback).

Imported only inside a worker process.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from agent.errors import InvalidRequest

# Best first; the first one this onnxruntime build offers is used, CPU always last.
PREFERRED_PROVIDERS = (
    "TensorrtExecutionProvider",
    "CUDAExecutionProvider",
    "CoreMLExecutionProvider",
    "QNNExecutionProvider",
    "OpenVINOExecutionProvider",
    "XnnpackExecutionProvider",
    "CPUExecutionProvider",
)

# ONNX tensor element types -> Open Inference Protocol datatypes
_OIP = {
    "tensor(float)": "FP32", "tensor(float16)": "FP16", "tensor(double)": "FP64",
    "tensor(int64)": "INT64", "tensor(int32)": "INT32", "tensor(int16)": "INT16",
    "tensor(int8)": "INT8", "tensor(uint8)": "UINT8", "tensor(uint16)": "UINT16",
    "tensor(uint32)": "UINT32", "tensor(uint64)": "UINT64", "tensor(bool)": "BOOL",
    "tensor(string)": "BYTES",
}


def choose_providers(available: list[str]) -> list[str]:
    chosen = [p for p in PREFERRED_PROVIDERS if p in available]
    return chosen or ["CPUExecutionProvider"]


class OnnxRuntime:
    def __init__(self, path: Path, n_threads: int) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = n_threads
        options.inter_op_num_threads = 1
        self.providers = choose_providers(ort.get_available_providers())
        self._session = ort.InferenceSession(str(path), options, providers=self.providers)

    def metadata(self) -> dict[str, Any]:
        def tensors(items: Any) -> list[dict[str, Any]]:
            return [{"name": t.name, "datatype": _OIP.get(t.type, t.type),
                     "shape": [d if isinstance(d, int) else -1 for d in t.shape]}
                    for t in items]

        return {"inputs": tensors(self._session.get_inputs()),
                "outputs": tensors(self._session.get_outputs()),
                "providers": self._session.get_providers()}

    def infer(self, inputs: dict[str, Any], outputs: list[str]) -> dict[str, Any]:
        known = {i.name for i in self._session.get_inputs()}
        missing = known - set(inputs)
        if missing or set(inputs) - known:
            raise InvalidRequest(f"inputs must be exactly {sorted(known)}; got {sorted(inputs)}")
        names = outputs or [o.name for o in self._session.get_outputs()]
        try:
            values = self._session.run(names, inputs)
        except Exception as exc:  # onnxruntime raises its own types for bad shapes/dtypes
            raise InvalidRequest(f"onnxruntime rejected the inputs: {exc}") from exc
        return dict(zip(names, values, strict=True))

    def smoke_inputs(self) -> dict[str, Any]:
        """Zeros of each input's shape (dynamic dimensions as 1) for the load smoke test."""
        import numpy as np

        dtypes = {"FP32": np.float32, "FP16": np.float16, "FP64": np.float64,
                  "INT64": np.int64, "INT32": np.int32, "INT8": np.int8, "UINT8": np.uint8,
                  "BOOL": np.bool_}
        out: dict[str, Any] = {}
        for t in self.metadata()["inputs"]:
            shape = [d if d > 0 else 1 for d in t["shape"]]
            out[t["name"]] = np.zeros(shape, dtype=dtypes.get(t["datatype"], np.float32))
        return out

    def close(self) -> None:
        del self._session
