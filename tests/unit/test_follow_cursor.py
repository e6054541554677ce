"""Following an agent's log by cursor: nothing stored twice, drops and resets seen."""

from __future__ import annotations

import pytest

from controller.core.telemetry import Cursor, follow, sample_gaps


@pytest.mark.parametrize(("cursor", "epoch", "seqs", "stored", "after", "reset", "lost"), [
    # first contact: everything new, whatever came before is no gap
    (Cursor(), "e1", [5, 6, 7], [5, 6, 7], Cursor("e1", 1, 7), False, 0),
    # the next page continues
    (Cursor("e1", 1, 7), "e1", [8, 9], [8, 9], Cursor("e1", 1, 9), False, 0),
    # a page read twice stores nothing
    (Cursor("e1", 1, 9), "e1", [8, 9], [], Cursor("e1", 1, 9), False, 0),
    # nothing new
    (Cursor("e1", 1, 9), "e1", [], [], Cursor("e1", 1, 9), False, 0),
    # the agent dropped 10..14 before we read them (its buffer overflowed)
    (Cursor("e1", 1, 9), "e1", [15, 16], [15, 16], Cursor("e1", 1, 16), False, 5),
    # a hole inside a page counts too
    (Cursor("e1", 1, 9), "e1", [10, 13], [10, 13], Cursor("e1", 1, 13), False, 2),
    # a new epoch: the log started over at 1, rows go under a new number
    (Cursor("e1", 1, 9), "e2", [1, 2], [1, 2], Cursor("e2", 2, 2), True, 0),
    (Cursor("e1", 1, 9), "e2", [3], [3], Cursor("e2", 2, 3), True, 2),
])
def test_follow(cursor: Cursor, epoch: str, seqs: list[int], stored: list[int], after: Cursor,
                reset: bool, lost: int) -> None:
    got = follow(cursor, epoch, seqs)
    assert (got.seqs, got.cursor, got.reset, got.lost) == (stored, after, reset, lost)


def test_sample_gaps_are_stretches_of_several_missed_intervals() -> None:
    assert sample_gaps(100.0, [110.0, 120.0, 200.0, 210.0], 10.0) == [(120.0, 200.0)]
    assert sample_gaps(None, [10.0, 20.0], 10.0) == []
    assert sample_gaps(0.0, [100.0], 0.0) == []
