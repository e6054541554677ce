"""The health gate's judgement of a model's output against the reference recorded at build."""

from __future__ import annotations

from controller.core.output_check import OutputSample, Reference, judge_output

REF = Reference("a" * 64, "p", OutputSample(True, 20, -2.0, (5, 6, 7, 8), (3.0, 2.0, 0.1, 4.0),
                                            "five six seven eight"))


def _obs(**kw: object) -> OutputSample:
    base = {"finite": True, "prompt_tokens": 20, "mean_logprob": -2.0,
            "tokens": (5, 6, 7, 8), "margins": (3.0, 2.0, 0.1, 4.0), "text": "x"}
    base.update(kw)
    return OutputSample(**base)  # type: ignore[arg-type]


def test_the_same_output_passes() -> None:
    assert judge_output(_obs(), REF) == ""


def test_non_finite_logits_fail_whatever_was_recorded() -> None:
    assert "not finite" in judge_output(_obs(finite=False), None)


def test_tokens_without_text_fail() -> None:
    assert "no text" in judge_output(_obs(text=""), None)


def test_perplexity_past_the_bound_fails() -> None:
    problem = judge_output(_obs(mean_logprob=-2.2), REF)  # ppl 9.0 vs 7.4: +22 %
    assert "perplexity of the golden prompt 9.03" in problem and "bound +10 %" in problem
    assert judge_output(_obs(mean_logprob=-2.05), REF) == ""  # +5 %: other CPU, other bits


def test_a_decisive_token_must_match_a_close_call_need_not() -> None:
    assert "greedy token 2" in judge_output(_obs(tokens=(5, 9, 7, 8)), REF)
    # token 3 was a close call (margin 0.1): what follows it may rightly differ
    assert judge_output(_obs(tokens=(5, 6, 1, 2)), REF) == ""
