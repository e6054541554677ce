"""Calibration runs long enough to see a board throttle and calibrates on what it holds."""

from __future__ import annotations

from agent.rpc import agent_pb2 as pb
from controller.services.calibrating import Round, run_rounds, sustained


def _response(decode: float) -> pb.BenchmarkResponse:
    return pb.BenchmarkResponse(samples=[
        pb.BenchmarkSample(prompt_tokens=20, completion_tokens=32, decode_tokens_per_s=decode)
        for _ in range(3)])


def test_rounds_repeat_until_the_window_has_passed() -> None:
    now = [0.0]

    def clock() -> float:
        return now[0]

    def bench() -> pb.BenchmarkResponse:
        now[0] += 40.0  # each round takes 40 s
        return _response(5.0)

    rounds = run_rounds(bench, 300.0, clock)
    assert len(rounds) == 8 and rounds[-1].ended_s == 320.0
    assert len(run_rounds(bench, 0.0, clock)) == 1  # a lab device: one round


def test_the_held_speed_is_the_last_third_not_the_cold_start() -> None:
    # a passively cooled board: fast while cold, then throttled
    speeds = [6.0, 5.8, 5.0, 4.4, 4.2, 4.2, 4.1, 4.2]
    rounds = [Round(40.0 * (i + 1), _response(v)) for i, v in enumerate(speeds)]
    cold, held = sustained(rounds)
    assert cold == 6.0
    assert held == 4.2
    assert held / cold < 0.75
