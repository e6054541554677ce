"""The Open Inference Protocol (KServe v2) core over gRPC, for ONNX models.

ServerLive, ServerReady, ModelReady, ServerMetadata, ModelMetadata and ModelInfer, wire
compatible with KServe and Triton clients. Tensors arrive as ``raw_input_contents`` (what
tritonclient sends) or typed ``contents``; outputs go back as ``raw_output_contents``.
Needs numpy, which every runtime extra brings; without it the agent serves no OIP.
"""

from __future__ import annotations

from typing import Any

import grpc
import numpy as np

from agent import __version__
from agent.core import AgentCore
from agent.errors import AgentError, InvalidRequest
from agent.rpc import grpc_service_pb2 as oip
from agent.rpc import grpc_service_pb2_grpc as oip_grpc
from agent.service import _abort

DTYPES = {
    "FP32": np.float32, "FP16": np.float16, "FP64": np.float64, "INT64": np.int64,
    "INT32": np.int32, "INT16": np.int16, "INT8": np.int8, "UINT8": np.uint8,
    "UINT16": np.uint16, "UINT32": np.uint32, "UINT64": np.uint64, "BOOL": np.bool_,
}
_CONTENTS = {
    "FP32": "fp32_contents", "FP64": "fp64_contents", "INT64": "int64_contents",
    "INT32": "int_contents", "INT16": "int_contents", "INT8": "int_contents",
    "UINT8": "uint_contents", "UINT16": "uint_contents", "UINT32": "uint_contents",
    "UINT64": "uint64_contents", "BOOL": "bool_contents",
}
_NAMES = {np.dtype(v): k for k, v in DTYPES.items()}


def decode_inputs(request: oip.ModelInferRequest) -> dict[str, Any]:
    """Tensors of a ModelInferRequest as numpy arrays, checked against their shapes."""
    raw = list(request.raw_input_contents)
    if raw and len(raw) != len(request.inputs):
        raise InvalidRequest("raw_input_contents must hold one buffer per input")
    out = {}
    for i, tensor in enumerate(request.inputs):
        dtype = DTYPES.get(tensor.datatype)
        if dtype is None:
            raise InvalidRequest(f"input {tensor.name}: datatype {tensor.datatype} is not "
                                 f"supported ({', '.join(DTYPES)})")
        shape = tuple(int(d) for d in tensor.shape)
        array: Any
        try:
            if raw:
                array = np.frombuffer(raw[i], dtype=dtype).reshape(shape)
            else:
                values = getattr(tensor.contents, _CONTENTS[tensor.datatype])
                array = np.asarray(values, dtype=dtype).reshape(shape)
        except ValueError as exc:
            raise InvalidRequest(f"input {tensor.name}: data does not match shape {shape} "
                                 f"({exc})") from exc
        out[tensor.name] = array
    return out


class InferenceServicer(oip_grpc.GRPCInferenceServiceServicer):
    def __init__(self, core: AgentCore) -> None:
        self.core = core

    def ServerLive(self, request: Any, context: grpc.ServicerContext) -> Any:
        return oip.ServerLiveResponse(live=True)

    def ServerReady(self, request: Any, context: grpc.ServicerContext) -> Any:
        return oip.ServerReadyResponse(ready=bool(self.core.store.read_state().serving()))

    def ModelReady(self, request: Any, context: grpc.ServicerContext) -> Any:
        """An active ONNX model of that name (or alias) is ready: loaded, or loaded on
        demand by its next request."""
        try:
            slot = self.core.onnx_slot(request.name)
        except AgentError:
            return oip.ModelReadyResponse(ready=False)
        loaded = self.core.loaded(slot.name)
        return oip.ModelReadyResponse(ready=loaded is None or loaded.worker.alive)

    def ServerMetadata(self, request: Any, context: grpc.ServicerContext) -> Any:
        return oip.ServerMetadataResponse(name="edgefleet-agent", version=__version__,
                                          extensions=[])

    def ModelMetadata(self, request: Any, context: grpc.ServicerContext) -> Any:
        try:
            meta = self.core.model_metadata(request.name)
        except AgentError as exc:
            return _abort(context, exc)
        slot = self.core.onnx_slot(request.name)
        tensor = oip.ModelMetadataResponse.TensorMetadata
        return oip.ModelMetadataResponse(
            name=request.name, versions=[slot.active.variant] if slot.active else [],
            platform="onnxruntime_onnx",
            inputs=[tensor(name=t["name"], datatype=t["datatype"], shape=t["shape"])
                    for t in meta["inputs"]],
            outputs=[tensor(name=t["name"], datatype=t["datatype"], shape=t["shape"])
                     for t in meta["outputs"]],
        )

    def ModelInfer(self, request: Any, context: grpc.ServicerContext) -> Any:
        try:
            inputs = decode_inputs(request)
            wanted = [o.name for o in request.outputs]
            results = self.core.infer(request.model_name, inputs, wanted)
        except AgentError as exc:
            return _abort(context, exc)
        response = oip.ModelInferResponse(model_name=request.model_name,
                                          model_version=request.model_version, id=request.id)
        for name, value in results.items():
            array = np.ascontiguousarray(value)
            response.outputs.add(name=name, datatype=_NAMES.get(array.dtype, "FP32"),
                                 shape=list(array.shape))
            response.raw_output_contents.append(array.tobytes())
        return response
