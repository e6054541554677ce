"""Chat messages -> one prompt, with the model's own chat template (worker side).

The template is the GGUF's ``tokenizer.chat_template`` (what the model was fine-tuned on),
rendered by llama-cpp-python's ``Jinja2ChatFormatter`` (a sandboxed Jinja2 environment with
the Hugging Face template helpers). A model without a template (a base model, or the offline
test model) gets ChatML, the fallback llama.cpp's own server uses, with ``<|im_end|>`` as a
stop sequence so a turn ends where the format says.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from agent.errors import InvalidRequest
from agent.runtimes.base import ChatMessage

TEMPLATE_KEY = "tokenizer.chat_template"
FALLBACK_NAME = "chatml (fallback: the model has no chat template)"
FALLBACK_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
FALLBACK_STOPS = ("<|im_end|>", "<|im_start|>")


@dataclass(frozen=True)
class ChatPrompt:
    text: str
    add_bos: bool  # False when the template already wrote the BOS token
    stops: tuple[str, ...]  # stop sequences the format implies


class ChatTemplate:
    """Built once per loaded model; ``render`` raises InvalidRequest for messages the template
    refuses (e.g. roles that do not alternate)."""

    def __init__(self, metadata: dict[str, Any], bos_token: str, eos_token: str) -> None:
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter

        template = metadata.get(TEMPLATE_KEY) or ""
        self.name = "gguf" if template else FALLBACK_NAME
        self._stops = () if template else FALLBACK_STOPS
        self._bos = bos_token
        try:
            self._formatter = Jinja2ChatFormatter(
                template=template or FALLBACK_TEMPLATE, eos_token=eos_token,
                bos_token=bos_token, add_generation_prompt=True)
        except Exception as exc:  # jinja2.TemplateSyntaxError: the model file is at fault
            raise RuntimeError(f"the model's chat template does not parse: {exc}") from exc

    def render(self, messages: tuple[ChatMessage, ...]) -> ChatPrompt:
        import jinja2

        try:
            plain: list[Any] = [{"role": m.role, "content": m.content} for m in messages]
            result = self._formatter(messages=plain)
        except (ValueError, jinja2.TemplateError) as exc:
            raise InvalidRequest(f"the model's chat template refused these messages: "
                                 f"{exc}") from exc
        text = result.prompt
        return ChatPrompt(text=text,
                          add_bos=not (self._bos and text.startswith(self._bos)),
                          stops=self._stops)
