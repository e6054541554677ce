"""Chat prompts come from the model's own GGUF chat template (set here with gguf's
`gguf_new_metadata`, as a user would), or from the documented ChatML fallback; a template
that refuses the messages is a 400, one that does not parse a 500."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import openai
import pytest

from controller.errors import AgentRefused
from tests.agent_process import AgentProcess
from tests.openai_agent import free_port, load, start, with_chat_template

CHAT = [{"role": "system", "content": "You are terse."},
        {"role": "user", "content": "How is the fleet?"}]
OWN_TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}"
    "{% if m['role'] == 'tool' %}{{ raise_exception('this template has no tool turns') }}"
    "{% endif %}<{{ m['role'] }}>{{ m['content'] }}{{ eos_token }}{% endfor %}"
    "{% if add_generation_prompt %}<assistant>{% endif %}"
)


@pytest.fixture(scope="module")
def tiny(model_cache: Path) -> Path:
    return model_cache / "tiny-llama" / "tiny-llama-q4_k_m.gguf"


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[AgentProcess, str]]:
    port = free_port()
    agent = start(tmp_path_factory.mktemp("templates") / "data", f"127.0.0.1:{port}")
    try:
        yield agent, f"http://127.0.0.1:{port}/v1"
    finally:
        agent.stop()


def _tokens(model: Path, text: str, add_bos: bool) -> int:
    from llama_cpp import Llama

    vocab = Llama(model_path=str(model), vocab_only=True, verbose=False)
    try:
        return len(vocab.tokenize(text.encode(), add_bos=add_bos, special=True))
    finally:
        vocab.close()


def _client(url: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=url, api_key="unused", max_retries=0, timeout=60)


def test_the_gguf_template_renders_the_prompt(served: tuple[AgentProcess, str], tiny: Path,
                                              tmp_path: Path) -> None:
    agent, url = served
    model = with_chat_template(tiny, tmp_path / "own.gguf", OWN_TEMPLATE)
    load(agent, model)
    response = _client(url).chat.completions.create(
        model="tiny-llama", messages=CHAT, max_tokens=4)  # type: ignore[arg-type]
    rendered = "<s><system>You are terse.</s><user>How is the fleet?</s><assistant>"
    # the template wrote the BOS itself: the agent must not add a second one
    assert response.usage.prompt_tokens == _tokens(model, rendered, add_bos=False)
    with pytest.raises(openai.BadRequestError) as info:
        _client(url).chat.completions.create(
            model="tiny-llama", max_tokens=4,
            messages=[*CHAT, {"role": "tool", "content": "42", "tool_call_id": "1"}])  # type: ignore[list-item]
    assert "this template has no tool turns" in info.value.body["message"]


def test_a_model_without_template_gets_chatml(served: tuple[AgentProcess, str], tiny: Path
                                              ) -> None:
    agent, url = served
    load(agent, tiny)
    response = _client(url).chat.completions.create(
        model="tiny-llama", messages=CHAT, max_tokens=4)  # type: ignore[arg-type]
    rendered = ("<|im_start|>system\nYou are terse.<|im_end|>\n"
                "<|im_start|>user\nHow is the fleet?<|im_end|>\n<|im_start|>assistant\n")
    assert response.usage.prompt_tokens == _tokens(tiny, rendered, add_bos=True)


def test_a_template_that_fails_while_rendering_is_a_server_error(
        served: tuple[AgentProcess, str], tiny: Path, tmp_path: Path) -> None:
    agent, url = served
    load(agent, with_chat_template(tiny, tmp_path / "fails.gguf",
                                   "{% for m in messages %}{{ m['content'] / 2 }}{% endfor %}"))
    with pytest.raises(openai.InternalServerError) as info:
        _client(url).chat.completions.create(
            model="tiny-llama", messages=CHAT, max_tokens=4)  # type: ignore[arg-type]
    assert info.value.status_code == 500 and info.value.body["code"] == "runtime_error"
    assert info.value.body["type"] == "server_error"
    # plain completions need no template and still work
    done = _client(url).completions.create(model="tiny-llama", prompt="hi", max_tokens=2)
    assert done.usage.completion_tokens == 2


def test_a_model_whose_template_does_not_parse_is_refused_at_load(
        served: tuple[AgentProcess, str], tiny: Path, tmp_path: Path) -> None:
    """llama-cpp-python compiles the GGUF's templates when it loads the model: the load
    fails (a deploy rolls back), and the model served before stays."""
    agent, url = served
    load(agent, tiny)
    broken = with_chat_template(tiny, tmp_path / "broken.gguf",
                                "{% for m in messages %}{{ m['content'] }}")
    with pytest.raises(AgentRefused, match="TemplateSyntaxError"):
        load(agent, broken)
    response = _client(url).chat.completions.create(
        model="tiny-llama", messages=CHAT, max_tokens=2)  # type: ignore[arg-type]
    assert response.usage.completion_tokens == 2
