"""Is a language model's output a model's output? Computed in the worker process, for the
controller's health gate.

For a prompt: the mean log-probability of each prompt token given the ones before (teacher
forcing; ``exp(-mean)`` is the prompt's perplexity), then up to ``max_tokens`` greedy tokens,
each with its margin (log-probability of the top token minus the runner-up), and whether every
logit was finite. A file whose weights hold NaN (an export gone wrong) loads, smoke-tests and
"generates" empty text; its logits give it away. The controller compares the numbers with the
ones recorded when the artifact was built (``controller/golden.py``).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from agent.errors import InvalidRequest


def _log_softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max()
    result: np.ndarray = shifted - np.log(np.exp(shifted).sum())
    return result


def verify_output(llm: Any, prompt: str, max_tokens: int) -> dict[str, Any]:
    """``llm`` is a ``llama_cpp.Llama``. Returns the VerifyOutputResponse fields."""
    import llama_cpp

    tokens = llm.tokenize(prompt.encode("utf-8"), add_bos=True)
    if len(tokens) < 2 or len(tokens) + max_tokens >= llm.n_ctx():
        raise InvalidRequest(f"the prompt is {len(tokens)} tokens; VerifyOutput needs 2 or more "
                             f"and room for {max_tokens} more in a context of {llm.n_ctx()}")
    n_vocab = llm.n_vocab()

    def last_logits() -> np.ndarray:
        row = np.ctypeslib.as_array(llama_cpp.llama_get_logits(llm.ctx), shape=(n_vocab,))
        return row.astype(np.float64)  # a copy: the next eval overwrites the buffer

    llm.reset()
    finite = True
    total = 0.0
    for i, token in enumerate(tokens[:-1]):
        llm.eval([token])
        logits = last_logits()
        if not np.isfinite(logits).all():
            finite = False
            break
        total += float(_log_softmax(logits)[tokens[i + 1]])
    out: list[int] = []
    margins: list[float] = []
    if finite:
        llm.eval([tokens[-1]])
        eos = llm.token_eos()
        for _ in range(max_tokens):
            logits = last_logits()
            if not np.isfinite(logits).all():
                finite = False
                break
            logprobs = _log_softmax(logits)
            runner_up, best = np.argsort(logprobs)[-2:]
            out.append(int(best))
            margins.append(float(logprobs[best] - logprobs[runner_up]))
            if best == eos:
                break
            llm.eval([int(best)])
    llm.reset()
    text = llm.detokenize([t for t in out if t != llm.token_eos()]).decode("utf-8", "replace")
    return {
        "logits_finite": finite,
        "prompt_tokens": len(tokens),
        "prompt_mean_logprob": total / (len(tokens) - 1) if finite else 0.0,
        "tokens": out,
        "margins": margins,
        "text": text,
        "problem": "" if finite else "the model's logits are not finite (NaN or infinite): "
        "its weights are broken",
    }
