"""The collector against real agents: every request record and device sample stored exactly
once across an agent restart, a collector killed between and during passes, an unreachable
(hung) agent and a buffer that overflowed; gaps recorded as gaps."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from controller.services.context import Fleet
from tests.agent_process import AgentProcess
from tests.conftest import Cli

DEVICE = "kiosk-1"


@pytest.fixture
def agent(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[AgentProcess]:
    monkeypatch.setenv("FLEET_AGENT_SAMPLE_S", "0.2")  # samples pile up fast enough to test
    a = AgentProcess(tmp_path / "data")
    yield a
    a.stop()


def _serving(agent: AgentProcess, model_cache: Path, cli: Cli) -> None:
    """Start the agent with the q4_k_m tiny model and register it as a device."""
    gguf = model_cache / "tiny-llama" / "tiny-llama-q4_k_m.gguf"
    agent.start()
    agent.stage(gguf)
    with agent.client() as client:
        client.load_model(agent.load_request(gguf, "q4_k_m"))
    assert cli("device", "add", DEVICE, "--host", "127.0.0.1", "--agent-port",
               str(agent.port), "--group", "kiosks").code == 0


def _restart(agent: AgentProcess, hard: bool = True, down_s: float = 0.0) -> None:
    """Stop the agent, leave it down for `down_s` seconds, start it again."""
    assert agent.proc is not None
    if hard:
        os.killpg(agent.proc.pid, signal.SIGKILL)
        agent.proc.wait(timeout=15)
    else:
        agent.stop()
    time.sleep(down_s)
    agent.start()
    Fleet.open().inventory.update_device(DEVICE, agent_port=agent.port)


def _generate(agent: AgentProcess, n: int) -> None:
    with agent.client() as client:
        for _ in range(n):
            client.generate("hello", max_tokens=3)


def _rows(table: str) -> list[tuple[int, int]]:
    with Fleet.open().inventory.engine.connect() as c:
        return [(r.epoch_no, r.seq) for r in c.execute(sa.text(
            f"SELECT epoch_no, seq FROM {table} WHERE device = :d ORDER BY epoch_no, seq"),
            {"d": DEVICE})]


def _gaps() -> list[sa.Row[tuple[str, float, float | None, int]]]:
    with Fleet.open().inventory.engine.connect() as c:
        return list(c.execute(sa.text("SELECT kind, start_ts, end_ts, lost FROM telemetry_gap "
                                      "WHERE device = :d ORDER BY id"), {"d": DEVICE}))


def _contiguous(rows: list[tuple[int, int]]) -> bool:
    seqs = [s for _, s in rows]
    return seqs == list(range(seqs[0], seqs[0] + len(seqs)))


def test_nothing_lost_or_doubled_across_an_agent_restart(agent: AgentProcess, cli: Cli,
                                                        model_cache: Path) -> None:
    _serving(agent, model_cache, cli)
    _generate(agent, 3)
    assert cli("collect").code == 0
    assert _rows("telemetry_request") == [(1, 1), (1, 2), (1, 3)]
    _generate(agent, 2)  # not collected before the kill: the agent's buffer keeps them
    # down for 10 sample intervals: longer than the 3 that make a gap, however fast it restarts
    _restart(agent, down_s=2.0)
    _generate(agent, 2)
    result = cli("collect", "--json")
    assert result.code == 0, result.err
    assert _rows("telemetry_request") == [(1, s) for s in range(1, 8)]
    samples = _rows("telemetry_sample")
    assert samples and _contiguous(samples) and {e for e, _ in samples} == {1}
    # the agent was down for its restart: no samples for a while, recorded as such
    assert "agent-down" in [g.kind for g in _gaps()]
    assert cli("collect").code == 0  # a pass with nothing new adds nothing
    assert len(_rows("telemetry_request")) == 7 and _rows("telemetry_sample")[:len(samples)] \
        == samples


def test_collector_killed_between_and_during_passes_loses_and_doubles_nothing(
        agent: AgentProcess, cli: Cli, model_cache: Path, home: Path) -> None:
    _serving(agent, model_cache, cli)
    env = {**os.environ, "FLEET_HOME": str(home)}
    monitor_cmd = [sys.executable, "-c", "from controller.cli.app import run; run()",
                   "monitor", "--interval", "0.2", "--quiet"]
    for round_no in range(4):
        _generate(agent, 5)
        monitor = subprocess.Popen(monitor_cmd, env=env, stdout=subprocess.DEVNULL,
                                   stderr=subprocess.DEVNULL, start_new_session=True)
        try:
            deadline = time.monotonic() + 30
            # rounds 0 and 2: killed once it has stored something (between passes, most
            # likely); 1 and 3: killed at once (during its first pass or before it)
            while round_no % 2 == 0 and len(_rows("telemetry_request")) < 5 * (round_no + 1):
                assert time.monotonic() < deadline, "the monitor stored nothing"
                time.sleep(0.05)
            if round_no % 2:
                time.sleep(0.3 + 0.2 * round_no)
        finally:
            os.killpg(monitor.pid, signal.SIGKILL)
            monitor.wait(timeout=15)
    assert cli("collect").code == 0
    rows = _rows("telemetry_request")
    assert rows == [(1, s) for s in range(1, 21)]
    samples = _rows("telemetry_sample")
    assert len(samples) == len(set(samples)) and _contiguous(samples)


def test_a_hung_agent_is_a_recorded_gap_and_its_records_come_later(
        agent: AgentProcess, cli: Cli, model_cache: Path) -> None:
    _serving(agent, model_cache, cli)
    _generate(agent, 2)
    assert cli("collect").code == 0
    _generate(agent, 3)
    assert agent.proc is not None
    os.killpg(agent.proc.pid, signal.SIGSTOP)  # the agent hangs: connects, never answers
    try:
        started = time.monotonic()
        result = cli("collect", "--timeout", "1")
        assert time.monotonic() - started < 10  # bounded by the deadline, not by the agent
        assert result.code == 4 and DEVICE in result.err and "unreachable" in result.err
        assert cli("collect", "--timeout", "1").code == 4  # still away: one gap, not two
        open_gaps = [g for g in _gaps() if g.kind == "unreachable"]
        assert len(open_gaps) == 1 and open_gaps[0].end_ts is None
        status = cli("status", "--json", "--no-collect")
        assert '"unreachable"' in status.out and status.code == 4  # as last seen: scripts tell
    finally:
        os.killpg(agent.proc.pid, signal.SIGCONT)
    assert cli("collect").code == 0
    gap = next(g for g in _gaps() if g.kind == "unreachable")
    assert gap.end_ts is not None and gap.end_ts > gap.start_ts
    assert _rows("telemetry_request") == [(1, s) for s in range(1, 6)]


def test_records_dropped_by_a_full_buffer_are_a_gap_with_their_count(
        agent: AgentProcess, cli: Cli, model_cache: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLEET_AGENT_TELEMETRY_RECORDS", "10")
    _serving(agent, model_cache, cli)
    _generate(agent, 1)
    assert cli("collect").code == 0
    _generate(agent, 25)  # 26 recorded, at most 10 kept: the oldest were dropped unread
    assert cli("collect").code == 0
    rows = _rows("telemetry_request")
    kept = [s for _, s in rows[1:]]
    assert rows[0] == (1, 1) and kept[-1] == 26 and kept == list(range(kept[0], 27))
    lost = [g for g in _gaps() if g.kind == "records-lost"]
    assert len(lost) == 1 and lost[0].lost == kept[0] - 2
