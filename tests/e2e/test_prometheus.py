"""`fleet monitor --metrics` scraped by a real Prometheus server (Debian's package): the TTFT
histogram answers histogram_quantile and the energy counter carries its meter."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.agent_process import AgentProcess
from tests.conftest import Cli

PROMETHEUS = shutil.which("prometheus") or "/usr/bin/prometheus"
ROOT = Path(__file__).resolve().parents[2]


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def agent(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[AgentProcess]:
    monkeypatch.setenv("FLEET_AGENT_SAMPLE_S", "0.5")
    a = AgentProcess(tmp_path / "data", emulate="lab-pi4-2gb")  # estimates its energy
    yield a
    a.stop()


def _query(port: int, promql: str) -> list[dict[str, Any]]:
    url = f"http://127.0.0.1:{port}/api/v1/query?" + urllib.parse.urlencode({"query": promql})
    with urllib.request.urlopen(url, timeout=5) as resp:
        body = json.loads(resp.read())
    assert body["status"] == "success", body
    return list(body["data"]["result"])


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=15)


def test_a_real_prometheus_scrapes_quantiles_and_energy(agent: AgentProcess, cli: Cli,
                                                        home: Path, tmp_path: Path,
                                                        model_cache: Path) -> None:
    if not Path(PROMETHEUS).exists():
        pytest.skip("the prometheus binary is missing: apt-get install prometheus "
                    "(scripts/setup.sh installs it)")
    gguf = model_cache / "tiny-llama" / "tiny-llama-q4_k_m.gguf"
    agent.start()
    agent.stage(gguf)
    with agent.client() as client:
        client.load_model(agent.load_request(gguf, "q4_k_m"))
    assert cli("device", "add", "kiosk-1", "--host", "127.0.0.1", "--agent-port",
               str(agent.port), "--group", "kiosks").code == 0
    metrics_port, prom_port = _port(), _port()
    env = {**os.environ, "FLEET_HOME": str(home)}
    monitor = subprocess.Popen(
        [sys.executable, "-c", "from controller.cli.app import run; run()", "monitor",
         "--interval", "0.5", "--quiet", "--metrics", f"127.0.0.1:{metrics_port}"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    config = tmp_path / "prometheus.yml"
    config.write_text(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
        "scrape_configs:\n  - job_name: edgefleet\n    static_configs:\n"
        f"      - targets: ['127.0.0.1:{metrics_port}']\n")
    prometheus = subprocess.Popen(
        [PROMETHEUS, f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
         f"--web.listen-address=127.0.0.1:{prom_port}"],
        stdout=subprocess.DEVNULL, stderr=(tmp_path / "prometheus.log").open("wb"),
        start_new_session=True)
    try:
        with agent.client() as client:
            for _ in range(6):
                client.generate("hello", max_tokens=4)
        deadline = time.monotonic() + 60  # bounded: a few scrapes at 1 s
        quantile: list[dict[str, Any]] = []
        energy: list[dict[str, Any]] = []
        while time.monotonic() < deadline:
            try:
                quantile = _query(prom_port, "histogram_quantile(0.95, sum by (le, variant) "
                                  "(edgefleet_request_ttft_seconds_bucket))")
                energy = _query(prom_port, "edgefleet_device_energy_joules_total > 0")
                requests = _query(prom_port, 'sum(edgefleet_requests_total{outcome="ok"})')
            except OSError:
                quantile, energy, requests = [], [], []
            if quantile and energy and requests and float(requests[0]["value"][1]) >= 6:
                break
            time.sleep(0.5)
        assert quantile, "Prometheus never got the TTFT histogram"
        assert quantile[0]["metric"]["variant"] == "q4_k_m"
        p95 = float(quantile[0]["value"][1])
        assert 0 < p95 < 30  # seconds, from real requests
        assert energy and energy[0]["metric"]["meter"] == "estimated"  # never "measured"
        assert float(energy[0]["value"][1]) > 0
        info = _query(prom_port, "edgefleet_device_info")
        assert info[0]["metric"]["device"] == "kiosk-1"
        assert info[0]["metric"]["variant"] == "q4_k_m" and info[0]["metric"]["state"]
        up = _query(prom_port, 'edgefleet_device_up{device="kiosk-1"}')
        assert up and up[0]["value"][1] == "1"
        # every query of the example Grafana dashboard is valid PromQL over these metrics
        board = json.loads((ROOT / "docs" / "grafana" / "edgefleet.json").read_text())
        for panel in board["panels"]:
            for target in panel["targets"]:
                _query(prom_port, target["expr"].replace("$group", ".*"))
    finally:
        _stop(prometheus)
        _stop(monitor)
