"""A real worker with real llama.cpp says when it has accepted a prompt, before the first token,
when the request asks (a streamed OpenAI request: its response's head leaves then)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.errors import ContextLengthExceeded
from agent.runtimes.base import GenerationRequest
from agent.workers import Worker


@pytest.fixture(scope="module")
def worker(model_cache: Path) -> Iterator[Worker]:
    w = Worker("gguf", model_cache / "tiny-llama" / "tiny-llama-q8_0.gguf", 64, 2)
    yield w
    w.stop()


def test_the_prompt_accepted_comes_first_with_its_token_count(worker: Worker) -> None:
    events = list(worker.generate(GenerationRequest(prompt="the edge fleet", max_tokens=4,
                                                    announce_prefill=True)))
    kinds = [k for k, _ in events]
    assert kinds[0] == "started" and kinds.count("started") == 1
    assert "text" in kinds and kinds[-1] == "done"
    assert events[0][1] == events[-1][1].prompt_tokens > 0


def test_without_asking_there_is_no_such_event(worker: Worker) -> None:
    kinds = [k for k, _ in worker.generate(GenerationRequest(prompt="the edge", max_tokens=2))]
    assert "started" not in kinds and kinds[-1] == "done"


def test_a_prompt_refused_is_refused_before_anything_is_announced(worker: Worker) -> None:
    events = []
    with pytest.raises(ContextLengthExceeded):
        for event in worker.generate(GenerationRequest(prompt="word " * 200, max_tokens=2,
                                                       announce_prefill=True)):
            events.append(event)
    assert events == []  # so the HTTP status can still say 400
