"""A real `fleet-agent serve` subprocess for wire and fault tests."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from agent.contract import sha256_file
from agent.rpc import agent_pb2 as pb
from controller.adapters.agent_client import GrpcAgentClient


class AgentProcess:
    def __init__(self, data_dir: Path, emulate: str = "", failpoints: str = "",
                 extra: tuple[str, ...] = ()) -> None:
        self.data_dir = data_dir
        self.emulate = emulate
        self.failpoints = failpoints
        self.extra = extra
        self.proc: subprocess.Popen[bytes] | None = None
        self.port = 0

    def start(self, failpoints: str | None = None) -> AgentProcess:
        port_file = self.data_dir.parent / f"{self.data_dir.name}.port"
        port_file.unlink(missing_ok=True)
        env = dict(os.environ)
        env["FLEET_AGENT_FAILPOINTS"] = self.failpoints if failpoints is None else failpoints
        args = [sys.executable, "-m", "agent.cli", "serve", "--listen", "127.0.0.1:0",
                "--data-dir", str(self.data_dir), "--port-file", str(port_file),
                "--threads", "1", *self.extra]
        if self.emulate:
            args += ["--emulate", self.emulate]
        log = (self.data_dir.parent / f"{self.data_dir.name}.log").open("ab")
        self.proc = subprocess.Popen(args, env=env, stdout=log, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        deadline = time.monotonic() + 60
        while not port_file.exists():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"agent did not start (exit {self.proc.poll()})")
            time.sleep(0.05)
        self.port = int(port_file.read_text())
        return self

    def client(self, timeout_s: float = 60.0) -> GrpcAgentClient:
        return GrpcAgentClient("test-agent", "127.0.0.1", self.port, timeout_s)

    def stage(self, path: Path) -> str:
        digest = sha256_file(path)
        incoming = self.data_dir / "store" / "incoming"
        incoming.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, incoming / digest)
        return digest

    def load_request(self, path: Path, variant: str, estimate: int = 0) -> pb.LoadModelRequest:
        return pb.LoadModelRequest(sha256=sha256_file(path), name="tiny-llama", variant=variant,
                                   format="gguf", n_ctx=256, size_bytes=path.stat().st_size,
                                   estimated_memory_bytes=estimate)

    def wait_exit(self, timeout_s: float = 30.0) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout=timeout_s)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=15)
