"""The rollup sketch: any merge answers every quantile within ALPHA of the exact value."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from controller.core.sketch import ALPHA, Sketch, percentile

VALUES = st.lists(st.floats(min_value=0.01, max_value=1e6, allow_nan=False), min_size=1,
                  max_size=300)
QUANTILES = st.sampled_from([0.0, 0.05, 0.5, 0.9, 0.95, 0.99, 1.0])


@given(VALUES, VALUES, QUANTILES)
@settings(max_examples=200, deadline=None)
def test_merged_sketches_stay_within_alpha_of_the_exact_quantile(a: list[float],
                                                                  b: list[float],
                                                                  q: float) -> None:
    merged = Sketch().extend(a).merge(Sketch.decode(Sketch().extend(b).encode()))
    exact = percentile(a + b, q)
    got = merged.quantile(q)
    assert exact is not None and got is not None
    assert abs(got - exact) <= ALPHA * exact + 1e-9
    assert merged.count == len(a) + len(b)


def test_exact_percentiles_interpolate_like_numpy() -> None:
    assert percentile([1, 2, 3, 4], 0.5) == 2.5
    assert percentile([10.0], 0.99) == 10.0
    assert percentile([], 0.5) is None
    assert percentile(list(range(1, 101)), 0.95) == 95.05


def test_zeros_and_encoding_round_trip() -> None:
    s = Sketch().extend([0.0, 0.0, 5.0])
    assert s.quantile(0.0) == 0.0 and Sketch.decode(s.encode()) == s
    assert Sketch.decode("").count == 0 and Sketch().quantile(0.5) is None
