"""Is what a model produced on the device a model's output? Pure judgement over numbers.

The reference is recorded when the artifact enters the controller's cache (built or imported:
``controller/golden.py``): for a fixed golden prompt, the mean log-probability of its tokens
(so its perplexity) and the greedy continuation with each token's margin over the runner-up.
The device computes the same numbers on the same file (``VerifyOutput``). A file whose logits
are not finite fails; so does empty output, a perplexity more than ``PPL_BOUND`` above the
recorded one, or a greedy token that differs where the recorded margin was decisive (CPUs and
kernels differ in the last bits, so close calls may go either way).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

GOLDEN_PROMPT = "The edge device reports its temperature, power and memory to the fleet."
GOLDEN_TOKENS = 8
PPL_BOUND = 1.10  # the device's perplexity of the golden prompt may exceed the build's by 10 %
DECISIVE_MARGIN = 0.5  # nats between the top token and the runner-up


@dataclass(frozen=True)
class OutputSample:
    """One model's numbers for the golden prompt (recorded, or measured on a device)."""

    finite: bool
    prompt_tokens: int
    mean_logprob: float
    tokens: tuple[int, ...]
    margins: tuple[float, ...]
    text: str
    problem: str = ""

    @property
    def perplexity(self) -> float:
        return math.exp(-self.mean_logprob) if self.finite else math.inf


@dataclass(frozen=True)
class Reference:
    sha256: str  # the file it was recorded on
    prompt: str
    sample: OutputSample
    recorded_with: str = ""  # e.g. "llama-cpp-python 0.3.36"


def judge_output(observed: OutputSample, reference: Reference | None) -> str:
    """The problem with ``observed`` (empty: it is a model's output)."""
    if not observed.finite:
        return observed.problem or "the model's logits are not finite (NaN or infinite)"
    if not observed.tokens:
        return "the model produced no token for the golden prompt"
    ref = reference.sample if reference else None
    eos_first = ref is not None and ref.tokens[:1] == observed.tokens[:1] and not ref.text
    if not observed.text and not eos_first:
        return (f"the model produced {len(observed.tokens)} tokens but no text for the "
                "golden prompt")
    if ref is None:
        return ""
    if not ref.finite:
        return ""  # nothing sane was recorded to compare with
    if observed.perplexity > ref.perplexity * PPL_BOUND:
        return (f"perplexity of the golden prompt {observed.perplexity:.2f} on the device, "
                f"{ref.perplexity:.2f} when the file was built "
                f"(+{(observed.perplexity / ref.perplexity - 1) * 100:.0f} %, bound "
                f"+{(PPL_BOUND - 1) * 100:.0f} %)")
    for i, (token, margin) in enumerate(zip(ref.tokens, ref.margins, strict=False)):
        if margin < DECISIVE_MARGIN:
            break  # a close call: what follows may rightly differ
        got = observed.tokens[i] if i < len(observed.tokens) else None
        if got != token:
            return (f"greedy token {i + 1} of the golden prompt is {got}, the build recorded "
                    f"{token} (by a margin of {margin:.2f} nats)")
    return ""


def describe(observed: OutputSample, reference: Reference | None) -> str:
    text = f"golden prompt ppl {observed.perplexity:.2f}"
    if reference is not None and reference.sample.finite:
        text += f" (build {reference.sample.perplexity:.2f})"
    return text
