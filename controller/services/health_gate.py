"""The health gate a new model passes on the device before deploy commits it: serving, its
output a model's output (finite logits, non-empty text, and the reference recorded when the
file was built when there is one), generating, and (when the user set limits) measuring
within them."""

from __future__ import annotations

from pathlib import Path

from controller import golden
from controller.core.gates import Gates, Measurement, describe, judge
from controller.core.output_check import GOLDEN_PROMPT, GOLDEN_TOKENS, Reference, judge_output
from controller.core.output_check import describe as describe_output
from controller.errors import AgentRefused
from controller.services.ports import DeviceLink

SMOKE_PROMPT = "The edge device says"
SMOKE_TOKENS = 4
GATE_TOKENS = 16  # decoded when measuring a new model against the gates
GATE_WORD = "the"  # one token in common vocabularies; the warm-up measures it anyway
WARM_UP_WORDS = 8


def reference_for(path: Path, sha256: str) -> Reference | None:
    """The reference output recorded for this file when it entered the cache, if any."""
    return golden.load(path, sha256)


def output_problem(client: DeviceLink, reference: Reference | None,
                   sha256: str = "") -> tuple[str, str]:
    """(problem, description) of the golden prompt run on the device (``VerifyOutput``).
    An agent that predates the RPC is not judged here (the smoke generation still is)."""
    prompt = reference.prompt if reference else GOLDEN_PROMPT
    tokens = len(reference.sample.tokens) if reference and reference.sample.tokens else (
        GOLDEN_TOKENS)
    try:
        observed = client.verify_output(prompt, tokens, sha256=sha256)
    except AgentRefused as exc:
        if exc.code == "UNIMPLEMENTED":
            return "", ""
        raise
    problem = judge_output(observed, reference)
    return problem, "" if problem else describe_output(observed, reference)


def health_check(client: DeviceLink, language_model: bool, gates: Gates,
                 reference: Reference | None = None, model: str = "",
                 sha256: str = "") -> tuple[str, str]:
    """(problem, measured): problem is empty when healthy. A tensor model passed its smoke
    inference on the device before it became active; a language model must also give a
    model's output for the golden prompt, generate text here and, when gates are set, meet
    them on a measured run. ``model``/``sha256`` name the model checked on a device of
    several models (requests go to it by name, not to the device's default model)."""
    try:
        if not client.model_serving():
            return "agent health reports the model not serving", ""
        if not language_model:
            return "", ""
        problem, checked = output_problem(client, reference, sha256)
        if problem:
            return problem, ""
        # the smoke run also warms the runtime up and, with gates, tells how many tokens the
        # model's tokenizer makes of the gate word, so the measured prompt has the length
        # the TTFT limit is meant for
        smoke = " ".join([GATE_WORD] * WARM_UP_WORDS) if gates.any else SMOKE_PROMPT
        result = client.generate(smoke, SMOKE_TOKENS, model=model)
        if result.summary.completion_tokens == 0 and result.summary.finish_reason != "stop":
            return "smoke generation produced no tokens", ""
        if result.summary.completion_tokens and not result.text:
            return (f"smoke generation produced {result.summary.completion_tokens} tokens "
                    "but no text"), ""
        if not gates.any:
            return "", checked
        per_word = max(1, round(result.summary.prompt_tokens / WARM_UP_WORDS))
        prompt = " ".join([GATE_WORD] * max(1, gates.prompt_tokens // per_word))
        summary = client.generate(prompt, GATE_TOKENS, model=model).summary
    except AgentRefused as exc:  # e.g. the runtime crashed on its first real request
        return exc.detail, ""
    measured = Measurement(summary.prompt_tokens, summary.completion_tokens,
                           summary.decode_tokens_per_s, summary.ttft_ms,
                           summary.joules_per_token, summary.energy_meter or "none")
    return judge(gates, measured), "; ".join(p for p in (describe(measured), checked) if p)
