"""A device that reports hostile strings (Rich markup and terminal escapes in a model name,
in an error): the CLI and the dashboard show them literally, and no control sequence reaches
the terminal or the database."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc
import pytest
from textual.content import Content
from textual.markup import MarkupError
from textual.widgets import DataTable

from agent.contract import sha256_file
from agent.rpc import agent_pb2 as pb
from agent.rpc import agent_pb2_grpc as pb_grpc
from controller.dashboard.app import make_dashboard
from controller.services.context import Fleet
from tests.agent_process import AgentProcess
from tests.conftest import Cli

HOSTILE = "[red]x[/] \x1b]0;pwned\x07\x1b[2J[link=https://evil.example]y[/link]"
CLEANED = "[red]x[/] [link=https://evil.example]y[/link]"


@pytest.fixture
def hostile_agent(tmp_path: Path, model_cache: Path) -> Iterator[AgentProcess]:
    """A real agent whose model was loaded under a hostile name (an unsigned test agent
    takes the name as sent; a compromised device could report anything)."""
    agent = AgentProcess(tmp_path / "data").start()
    try:
        q2 = model_cache / "tiny-llama" / "tiny-llama-q2_k.gguf"
        agent.stage(q2)
        with agent.client() as client:
            client.load_model(pb.LoadModelRequest(
                sha256=sha256_file(q2), name=HOSTILE, variant=HOSTILE, format="gguf",
                n_ctx=256, size_bytes=q2.stat().st_size))
        yield agent
    finally:
        agent.stop()


class _LyingAgent(pb_grpc.AgentServiceServicer):
    """A compromised device's agent: its errors carry markup and escapes."""

    def GetProfile(self, request: Any, context: grpc.ServicerContext) -> Any:
        return pb.GetProfileResponse(profile=pb.HardwareProfile(device_model=HOSTILE, cores=4))

    def Generate(self, request: Any, context: grpc.ServicerContext) -> Any:
        context.abort(grpc.StatusCode.INTERNAL, f"boom {HOSTILE}")


@pytest.fixture
def lying_agent() -> Iterator[int]:
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    pb_grpc.add_AgentServiceServicer_to_server(_LyingAgent(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    yield port
    server.stop(0)


def _literal(text: str) -> None:
    assert "\x1b" not in text and "\x07" not in text, repr(text)
    assert "[red]x[/]" in text


def test_status_shows_hostile_model_names_literally(cli: Cli, hostile_agent: AgentProcess
                                                    ) -> None:
    assert cli("device", "add", "evil", "--host", "127.0.0.1", "--agent-port",
               str(hostile_agent.port)).code == 0
    shown = cli("status")
    assert shown.code == 0, shown.err
    _literal(shown.out)
    data = json.loads(cli("status", "--json").out)["devices"][0]
    # the escapes were dropped as the agent's answer came in: nothing holding one is stored
    assert data["model"] == CLEANED

    cells: list[Any] = []

    async def drive() -> None:
        app = make_dashboard(Fleet.open(), refresh_s=0, collect=False)
        async with app.run_test(size=(160, 30)) as pilot:
            for _ in range(300):  # bounded: at most ~15 s
                if app.refreshes >= 1:
                    break
                await pilot.pause(0.05)
            cells.extend(app.query_one("#devices", DataTable).get_row_at(0))

    asyncio.run(drive())
    # what the table renders: the markup shown as text, not applied
    shown = [Content.from_markup(c).plain for c in cells if isinstance(c, str)]
    assert CLEANED in shown
    with pytest.raises(MarkupError):  # unescaped, the same text would break the table
        Content.from_markup(CLEANED)


def test_errors_from_a_device_are_shown_literally(cli: Cli, lying_agent: int) -> None:
    assert cli("device", "add", "liar", "--host", "127.0.0.1", "--agent-port",
               str(lying_agent)).code == 0
    result = cli("generate", "hi", "--device", "liar")
    assert result.code == 1
    _literal(result.out)
    _literal(result.err)
    assert "boom" in result.out
