"""The OpenAI endpoint around the model's life: nothing loaded, a crashed runtime, a unix
socket, the HTTP extra missing, and addresses that are not local."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import openai
import pytest

from tests.openai_agent import curl, free_port, load, start

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def tiny(model_cache: Path) -> Path:
    return model_cache / "tiny-llama" / "tiny-llama-q4_k_m.gguf"


def test_no_model_is_a_503_and_an_empty_list(tmp_path: Path, tiny: Path) -> None:
    port = free_port()
    agent = start(tmp_path / "data", f"127.0.0.1:{port}")
    try:
        url = f"http://127.0.0.1:{port}"
        assert json.loads(curl(f"{url}/v1/models")[1]) == {"object": "list", "data": []}
        status, body = curl(f"{url}/v1/chat/completions", "-d", json.dumps(
            {"model": "tiny-llama", "messages": [{"role": "user", "content": "hi"}]}))
        error = json.loads(body)["error"]
        assert status == 503 and error["code"] == "model_not_loaded"
        assert error["type"] == "server_error" and "deploy" in error["message"]
        assert curl(f"{url}/health")[0] == 503
        load(agent, tiny)  # the endpoint serves the model as soon as it is loaded
        assert curl(f"{url}/health")[0] == 200
    finally:
        agent.stop()


def test_a_crashed_runtime_is_a_503_then_the_model_is_back(
        tmp_path: Path, tiny: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLEET_AGENT_WATCH_S", "0")  # the request, not the watcher, notices
    port = free_port()
    agent = start(tmp_path / "data", f"127.0.0.1:{port}", tiny)
    try:
        with agent.client() as c:
            pid = c.list_models()[0].worker_pid
        os.kill(pid, signal.SIGKILL)
        client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="unused",
                               max_retries=0, timeout=60)
        with pytest.raises(openai.InternalServerError) as info:
            client.completions.create(model="tiny-llama", prompt="hi", max_tokens=4)
        assert info.value.status_code == 503
        assert info.value.body["code"] == "runtime_unavailable"
        again = client.completions.create(model="tiny-llama", prompt="hi", max_tokens=4)
        assert again.usage.completion_tokens == 4
        with agent.client() as c:
            assert c.telemetry().sample.worker_crashes == 1
    finally:
        agent.stop()


def test_unix_socket_with_curl_and_the_openai_client(tmp_path: Path, tiny: Path) -> None:
    sock = tmp_path / "run" / "openai.sock"
    agent = start(tmp_path / "data", f"unix://{sock}", tiny)
    try:
        status, body = curl("--unix-socket", str(sock), "http://localhost/v1/completions",
                            "-d", json.dumps({"model": "tiny-llama", "prompt": "hi",
                                              "max_tokens": 3}))
        assert status == 200 and json.loads(body)["usage"]["completion_tokens"] == 3
        client = openai.OpenAI(
            base_url="http://localhost/v1", api_key="unused", max_retries=0,
            http_client=openai.DefaultHttpxClient(transport=_uds_transport(str(sock))))
        chunks = list(client.chat.completions.create(
            model="tiny-llama", messages=[{"role": "user", "content": "hi"}], max_tokens=3,
            stream=True))
        assert chunks[-1].choices[0].finish_reason == "length"
    finally:
        agent.stop()
    assert not sock.exists()  # removed on shutdown


def _uds_transport(path: str) -> object:
    """The HTTP transport the openai client is built on (httpx, or httpx2 in openai 3)."""
    try:
        import httpx2 as httpx
    except ImportError:
        import httpx  # type: ignore[no-redef]
    return httpx.HTTPTransport(uds=path)


def test_without_the_http_extra_the_agent_serves_grpc_and_the_endpoint_says_why(
        tmp_path: Path, tiny: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    hide = tmp_path / "hide"
    hide.mkdir()
    # As if `edgefleet[openai]` were not installed: importing these raises ImportError.
    (hide / "sitecustomize.py").write_text(
        "import sys\nsys.modules['starlette'] = None\nsys.modules['uvicorn'] = None\n")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(hide), str(ROOT)]))
    port = free_port()
    agent = start(tmp_path / "data", f"127.0.0.1:{port}", tiny)
    try:
        status, body = curl(f"http://127.0.0.1:{port}/v1/models")
        error = json.loads(body)["error"]
        assert status == 503 and error["code"] == "endpoint_unavailable"
        assert "edgefleet[openai]" in error["message"]
        with agent.client() as c:
            assert c.generate("hello", 3).summary.completion_tokens == 3
    finally:
        agent.stop()
    log = (tmp_path / "data.log").read_text()
    assert "OpenAI endpoint unavailable" in log and "edgefleet[openai]" in log


@pytest.mark.parametrize(("address", "message"), [
    ("0.0.0.0:{port}", "not loopback"),
    ("{grpc}", "already a gRPC listener"),
    ("unix:relative.sock", "absolute path"),
])
def test_addresses_that_are_not_local_are_refused_at_start(
        tmp_path: Path, address: str, message: str) -> None:
    grpc_address = f"127.0.0.1:{free_port()}"
    result = subprocess.run(
        [sys.executable, "-m", "agent.cli", "serve", "--listen", grpc_address,
         "--data-dir", str(tmp_path / "data"),
         "--openai-listen", address.format(port=free_port(), grpc=grpc_address)],
        capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert result.returncode == 2
    lines = [line for line in result.stderr.splitlines() if line.startswith(("error:", "hint:"))]
    assert len(lines) == 2 and message in lines[0] and "Traceback" not in result.stderr



def test_an_onnx_model_is_not_offered_as_a_text_model(tmp_path: Path, model_cache: Path) -> None:
    from agent.rpc import agent_pb2 as pb

    port = free_port()
    agent = start(tmp_path / "data", f"127.0.0.1:{port}")
    try:
        mlp = model_cache / "tiny-mlp" / "tiny-mlp-fp32.onnx"
        digest = agent.stage(mlp)
        with agent.client() as c:
            c.load_model(pb.LoadModelRequest(sha256=digest, name="tiny-mlp", variant="fp32",
                                             format="onnx", size_bytes=mlp.stat().st_size))
        url = f"http://127.0.0.1:{port}/v1"
        assert json.loads(curl(f"{url}/models")[1])["data"] == []
        status, body = curl(f"{url}/completions", "-d", json.dumps(
            {"model": "tiny-mlp", "prompt": "hi"}))
        error = json.loads(body)["error"]
        assert status == 400 and error["param"] == "model" and "tensor inference" in (
            error["message"])
    finally:
        agent.stop()
