"""The Open Inference Protocol on a deployed ONNX model, with the real tritonclient."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import tritonclient.grpc as triton
from tritonclient.utils import InferenceServerException

from controller.lab import read_registry
from controller.services.context import Fleet
from tests.conftest import Cli, Result


def test_triton_client_talks_to_a_deployed_onnx_model(cli: Cli, lab: Callable[..., Result],
                                                      home: Path) -> None:
    lab("--devices", "1", "--profiles", "lab-pi5-8gb")
    result = cli("deploy", "tiny-mlp", "--group", "lab")
    assert result.code == 0, result.err + result.out
    device = Fleet.open().inventory.get_device("lab-1")
    assert device.variant == "fp32"  # highest quality that fits
    # Apps on the device use its local inference listener: no certificates there. The
    # management listener requires the fleet's client certificate (tests/wire/test_mtls.py).
    lab_device = read_registry(home / "lab")[0]
    client = triton.InferenceServerClient(url=f"{lab_device.address}:{lab_device.inference_port}")
    assert client.is_server_live() and client.is_server_ready()
    assert client.is_model_ready("tiny-mlp") and not client.is_model_ready("other")
    assert client.get_server_metadata().name == "edgefleet-agent"
    meta = client.get_model_metadata("tiny-mlp")
    assert [(t.name, t.datatype, list(t.shape)) for t in meta.inputs] == [
        ("input", "FP32", [-1, 64])]
    assert meta.platform == "onnxruntime_onnx" and list(meta.versions) == ["fp32"]

    x = np.random.default_rng(0).standard_normal((3, 64)).astype(np.float32)
    tensor = triton.InferInput("input", [3, 64], "FP32")
    tensor.set_data_from_numpy(x)
    response = client.infer("tiny-mlp", [tensor],
                            outputs=[triton.InferRequestedOutput("output")])
    got = response.as_numpy("output")
    local = ort.InferenceSession(str(home / "models" / "tiny-mlp" / "tiny-mlp-fp32.onnx"),
                                 providers=["CPUExecutionProvider"])
    expected = local.run(["output"], {"input": x})[0]
    assert got.shape == (3, 8)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)

    with pytest.raises(InferenceServerException) as info:
        client.infer("no-such-model", [tensor])
    assert "NOT_FOUND" in str(info.value.status())
    bad = triton.InferInput("input", [3, 63], "FP32")
    bad.set_data_from_numpy(np.zeros((3, 63), dtype=np.float32))
    with pytest.raises(InferenceServerException) as info:
        client.infer("tiny-mlp", [bad])
    assert "INVALID_ARGUMENT" in str(info.value.status())


def test_int8_variant_is_close_to_fp32(model_cache: Path) -> None:
    d = model_cache / "tiny-mlp"
    x = np.random.default_rng(1).standard_normal((16, 64)).astype(np.float32)
    outs = [ort.InferenceSession(str(d / f"tiny-mlp-{v}.onnx"),
                                 providers=["CPUExecutionProvider"]).run(None, {"input": x})[0]
            for v in ("fp32", "int8")]
    assert (d / "tiny-mlp-int8.onnx").stat().st_size < (d / "tiny-mlp-fp32.onnx").stat().st_size
    rel = np.abs(outs[0] - outs[1]).mean() / np.abs(outs[0]).mean()
    assert rel < 0.1
