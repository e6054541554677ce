"""A real agent serving the OpenAI endpoint, for the tests/wire/test_openai*.py tests."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from agent.rpc import agent_pb2 as pb
from tests.agent_process import AgentProcess

N_CTX = 2048  # room for a generation long enough to cancel half-way


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def load(agent: AgentProcess, model: Path, name: str = "tiny-llama", n_ctx: int = N_CTX) -> str:
    digest = agent.stage(model)
    with agent.client() as c:
        c.load_model(pb.LoadModelRequest(
            sha256=digest, name=name, variant="q4_k_m", format="gguf", n_ctx=n_ctx,
            size_bytes=model.stat().st_size))
    return digest


def start(data_dir: Path, listen: str, model: Path | None = None,
          extra: tuple[str, ...] = ()) -> AgentProcess:
    agent = AgentProcess(data_dir, extra=("--openai-listen", listen, *extra)).start()
    if model is not None:
        load(agent, model)
    return agent


def with_chat_template(src: Path, dst: Path, template: str) -> Path:
    """A copy of ``src`` whose GGUF metadata carries ``template`` (gguf's own tool)."""
    subprocess.run([sys.executable, "-m", "gguf.scripts.gguf_new_metadata", str(src), str(dst),
                    "--chat-template", template, "--force"],
                   check=True, capture_output=True)
    return dst


def curl(*args: str, timeout: float = 60) -> tuple[int, str]:
    """curl's exit status and output; ``-w`` appends the HTTP status on its own line."""
    result = subprocess.run(["curl", "-sS", "-N", "-w", "\n%{http_code}", *args],
                            capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, result.stderr
    body, _, status = result.stdout.rpartition("\n")
    return int(status), body


def sse_events(body: str) -> list[Any]:
    """The data of each server-sent event; "[DONE]" stays a string."""
    events: list[Any] = []
    for block in body.split("\n\n"):
        if block.startswith("data: "):
            data = block[len("data: "):]
            events.append(data if data == "[DONE]" else json.loads(data))
        else:
            assert not block.strip(), f"not an SSE event: {block!r}"
    return events


def wait_telemetry(agent: AgentProcess, count: int, timeout_s: float = 30) -> list[Any]:
    """The agent's request records once there are at least ``count``."""
    deadline = time.monotonic() + timeout_s
    while True:
        with agent.client() as c:
            records = list(c.telemetry().records)
        if len(records) >= count or time.monotonic() > deadline:
            return records
        time.sleep(0.05)
