"""The health gate a new model passes on the device before deploy commits it: serving,
generating, and (when the user set limits) measuring within them."""

from __future__ import annotations

from controller.core.gates import Gates, Measurement, describe, judge
from controller.errors import AgentRefused
from controller.services.ports import DeviceLink

SMOKE_PROMPT = "The edge device says"
SMOKE_TOKENS = 4
GATE_TOKENS = 16  # decoded when measuring a new model against the gates
GATE_WORD = "the"  # one token in common vocabularies; the warm-up measures it anyway
WARM_UP_WORDS = 8


def health_check(client: DeviceLink, language_model: bool,
                 gates: Gates) -> tuple[str, str]:
    """(problem, measured): problem is empty when healthy. A tensor model passed its smoke
    inference on the device before it became active; a language model must also generate
    here and, when gates are set, meet them on a measured run."""
    try:
        if not client.model_serving():
            return "agent health reports the model not serving", ""
        if not language_model:
            return "", ""
        # the smoke run also warms the runtime up and, with gates, tells how many tokens the
        # model's tokenizer makes of the gate word, so the measured prompt has the length
        # the TTFT limit is meant for
        smoke = " ".join([GATE_WORD] * WARM_UP_WORDS) if gates.any else SMOKE_PROMPT
        result = client.generate(smoke, SMOKE_TOKENS)
        if result.summary.completion_tokens == 0 and result.summary.finish_reason != "stop":
            return "smoke generation produced no tokens", ""
        if not gates.any:
            return "", ""
        per_word = max(1, round(result.summary.prompt_tokens / WARM_UP_WORDS))
        prompt = " ".join([GATE_WORD] * max(1, gates.prompt_tokens // per_word))
        summary = client.generate(prompt, GATE_TOKENS).summary
    except AgentRefused as exc:  # e.g. the runtime crashed on its first real request
        return exc.detail, ""
    measured = Measurement(summary.prompt_tokens, summary.completion_tokens,
                           summary.decode_tokens_per_s, summary.ttft_ms,
                           summary.joules_per_token, summary.energy_meter or "none")
    return judge(gates, measured), describe(measured)
