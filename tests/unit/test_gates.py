"""Health gates on measured numbers (pure)."""

from __future__ import annotations

from controller.core.gates import Gates, Measurement, describe, judge


def _m(tps: float = 20.0, ttft: float = 300.0, jpt: float = 0.2, meter: str = "rapl",
       tokens: int = 16) -> Measurement:
    return Measurement(128, tokens, tps, ttft, jpt, meter)


def test_no_gates_pass_anything() -> None:
    assert not Gates().any
    assert judge(Gates(), _m(tps=0.1, ttft=1e6, jpt=99)) == ""


def test_each_gate_names_the_measurement_and_the_limit() -> None:
    gates = Gates(min_tokens_per_s=25, max_ttft_ms=200, max_joules_per_token=0.1)
    verdict = judge(gates, _m())
    assert "measured decode 20.0 tok/s < --min-tps 25" in verdict
    assert "measured TTFT 300 ms (128-token prompt) > --max-ttft 200" in verdict
    assert "measured 0.200 J/token (rapl) > --max-j-per-token 0.1" in verdict
    assert judge(gates, _m(tps=30, ttft=150, jpt=0.05)) == ""


def test_what_cannot_be_judged_is_not_failed() -> None:
    # too few tokens for a decode speed; no energy meter at all
    assert judge(Gates(min_tokens_per_s=25), _m(tps=1, tokens=2)) == ""
    assert judge(Gates(max_joules_per_token=0.1), _m(jpt=0, meter="none")) == ""


def test_describe_states_the_meter() -> None:
    assert describe(_m()) == "measured 20.0 tok/s, TTFT 300 ms, 0.200 J/token (rapl)"
    assert describe(_m(meter="none")) == "measured 20.0 tok/s, TTFT 300 ms"


def test_a_wave_is_judged_per_device_on_what_it_served() -> None:
    from controller.core.gates import ServedWindow, WaveGates, judge_wave

    gates = WaveGates(max_p95_ttft_ms=500, max_error_rate=0.02, min_requests=5)
    ok = ServedWindow("a", 100, 1, 320.0)
    slow = ServedWindow("b", 50, 0, 812.0)
    failing = ServedWindow("c", 50, 5, 100.0)
    quiet = ServedWindow("d", 2, 2, 9000.0)
    assert judge_wave(gates, [ok]) == ("", "")
    problem, note = judge_wave(gates, [ok, slow, failing, quiet])
    assert "b p95 TTFT 812 ms > --wave-max-p95-ttft 500 (50 requests)" in problem
    assert "c error rate 10.0% > --wave-max-error-rate 2.0% (5 of 50)" in problem
    assert "a " not in problem and "d " not in problem
    assert note == "not judged, too little traffic: d (2 requests)"
    assert judge_wave(WaveGates(), [slow]) == ("", "")  # no limits set
