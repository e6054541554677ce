"""Fixtures of the wire tests that talk to one real agent process."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.agent_process import AgentProcess


@pytest.fixture
def ladder(model_cache: Path) -> dict[str, Path]:
    """The tiny-llama GGUF ladder, by variant."""
    d = model_cache / "tiny-llama"
    return {v: d / f"tiny-llama-{v}.gguf" for v in ("f16", "q8_0", "q4_k_m", "q2_k")}


@pytest.fixture
def agent(tmp_path: Path) -> Iterator[AgentProcess]:
    """A real `fleet-agent serve` (not started yet), stopped after the test."""
    a = AgentProcess(tmp_path / "data")
    yield a
    a.stop()
