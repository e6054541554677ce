"""LoRA adapters through the OpenAI-compatible endpoint of a real agent, with the real
`openai` client: ``MODEL+ADAPTER`` picks an adapter per request, ``MODEL`` runs with the one
deployed, ``MODEL+`` with the base alone."""

from __future__ import annotations

from pathlib import Path

import openai
import pytest

from agent.rpc import agent_pb2 as pb
from controller.testmodels import TinyLoraSpec, write_tiny_lora
from tests.openai_agent import free_port, start

PROMPT = "The edge device reports"


def test_model_names_pick_the_adapter(tmp_path: Path, model_cache: Path) -> None:
    port = free_port()
    base = model_cache / "tiny-llama" / "tiny-llama-q4_k_m.gguf"
    agent = start(tmp_path / "data", f"127.0.0.1:{port}", base)
    try:
        digest = agent.stage(base)
        for name, seed in (("kiosk", 1), ("faq", 2)):
            path = tmp_path / f"{name}.gguf"
            write_tiny_lora(path, spec=TinyLoraSpec(seed=seed))
            with agent.client() as c:
                c.load_model(pb.LoadModelRequest(
                    sha256=agent.stage(path), name=name, format="lora",
                    size_bytes=path.stat().st_size, base_sha256=digest))
        client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="unused",
                               max_retries=0, timeout=60)
        assert sorted(m.id for m in client.models.list()) == [
            "tiny-llama", "tiny-llama+faq", "tiny-llama+kiosk"]

        def text(model: str) -> str:
            reply = client.completions.create(model=model, prompt=PROMPT, max_tokens=16,
                                              temperature=0, seed=3)
            assert reply.model == model
            return reply.choices[0].text

        plain, kiosk, faq = text("tiny-llama+"), text("tiny-llama+kiosk"), text("tiny-llama+faq")
        assert len({plain, kiosk, faq}) == 3
        assert text("tiny-llama") == faq  # the last one deployed is the default
        assert text("tiny-llama+kiosk") == kiosk and text("tiny-llama+") == plain
        with pytest.raises(openai.NotFoundError, match="holds faq, kiosk"):
            text("tiny-llama+nope")
        stream = client.chat.completions.create(
            model="tiny-llama+kiosk", messages=[{"role": "user", "content": "hi"}],
            max_tokens=8, temperature=0, stream=True)
        assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    finally:
        agent.stop()
