"""What "best" means: the default pick an experienced operator would make, and the others.

``quality`` (the default) is quality subject to a usable speed, with diminishing returns:

1. *Usable*: a variant that fits, loses at most moderate quality (mean KLD below
   ``LARGE_KLD``) and decodes at least ``FLOOR_TPS``.
2. Speed past ``ENOUGH_TPS`` cannot be felt: if some usable variant within ``SMALL_KLD`` of
   the best quality reaches it, quality decides, but only while it can be seen: the fastest
   variant within ``NEGLIGIBLE_KLD`` of the best that reaches ``ENOUGH_TPS`` (Q8_0 over F16:
   the same answers, twice the speed).
3. Otherwise speed is short, and a quality difference up to ``SMALL_KLD`` is worth trading
   for it: the fastest usable variant within ``SMALL_KLD`` of the best usable one (Q4_K_M
   over Q8_0 on a Pi 5: most users cannot see the difference, but they feel 50 % more speed).
4. If nothing is usable, the fastest variant within ``SMALL_KLD`` of the least lossy one
   that fits without a large loss; if only large-loss variants fit, the least lossy.

Thresholds, and why:

- ``FLOOR_TPS = 3``: people read about 238 words a minute silently (Brysbaert 2019, a
  meta-analysis of 190 studies), about 4 words or 5 tokens a second at ~1.3 tokens per
  English word. Below ~3 tokens/s streamed text falls visibly behind a reader.
- ``ENOUGH_TPS = 10``: about twice reading speed; faster streaming is not felt in chat (batch
  jobs that care should say ``--prefer speed``).
- ``SMALL_KLD = 0.05``: the upper edge of the "small" band fit tools anchor on llama.cpp's
  KLD scoreboard (shared/facts.md 1.4): Q4_K_M (0.031) and better, where the full-precision
  model's top token is kept 92-99 % of the time.
- ``NEGLIGIBLE_KLD = 0.01``: the "negligible" band of the same scale: Q8_0 (0.0014), Q6_K
  (0.0055), F16; the top token agrees 96-99 % of the time.
- ``LARGE_KLD = 0.15``: the start of the "large" band (Q2_K: 0.445; Q3_K_M is 0.10).

``max-quality`` is the plain highest quality that fits (the old default); ``speed`` the
fastest; ``energy`` the fewest joules per token.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol

OBJECTIVES = ("quality", "max-quality", "speed", "energy")
FLOOR_TPS = 3.0
ENOUGH_TPS = 10.0
NEGLIGIBLE_KLD = 0.01
SMALL_KLD = 0.05
LARGE_KLD = 0.15


class Option(Protocol):
    """What the rules look at: a candidate's quality loss, speed and energy."""

    @property
    def kld(self) -> float: ...
    @property
    def tokens_per_s(self) -> float: ...
    @property
    def joules_per_token(self) -> float: ...
    @property
    def size(self) -> int: ...


_Row = tuple[float, float, int, Option]  # kld, tokens/s, size, the option


def _best_quality(rows: Sequence[_Row]) -> Option:
    return min(rows, key=lambda r: (r[0], -r[1], r[2]))[3]


def _fastest(rows: Sequence[_Row]) -> Option:
    return min(rows, key=lambda r: (-r[1], r[0], r[2]))[3]


def _band(rows: Sequence[_Row], width: float = SMALL_KLD) -> list[_Row]:
    """Rows whose quality loss is within ``width`` of the best one's (absolute KLD: a loss
    below the band's edge cannot be told apart from the best)."""
    edge = max(min(r[0] for r in rows), width)
    return [r for r in rows if r[0] <= edge]


def balanced(options: Sequence[Option]) -> tuple[Option, str]:
    """The default pick among fitting options, and the rule that chose it (for the reason)."""
    return balanced_rows([(o.kld, o.tokens_per_s, o.size, o) for o in options])


def balanced_rows(rows: Sequence[_Row]) -> tuple[Option, str]:
    """``balanced`` over (kld, tokens/s, size, option) rows."""
    if all(r[1] <= 0 for r in rows):
        return _best_quality(rows), "highest quality (speed unknown)"
    acceptable = [r for r in rows if r[0] < LARGE_KLD]
    usable = [r for r in acceptable if r[1] >= FLOOR_TPS]
    if usable:
        band = _band(usable)
        enough = [r for r in band if r[1] >= ENOUGH_TPS]
        if enough:
            best = _best_quality(enough)
            pick = _fastest(_band(enough, NEGLIGIBLE_KLD))
            if pick is best:
                return best, f"highest quality at >= {ENOUGH_TPS:g} tok/s"
            return pick, (f"fastest within a negligible quality loss (KLD {NEGLIGIBLE_KLD:g}) "
                          f"of the best at >= {ENOUGH_TPS:g} tok/s")
        if len(band) == 1:
            return band[0][3], f"highest quality at >= {FLOOR_TPS:g} tok/s"
        return _fastest(band), (f"fastest within a small quality loss (KLD {SMALL_KLD:g}) of "
                                f"the best at >= {FLOOR_TPS:g} tok/s")
    if acceptable:
        return _fastest(_band(acceptable)), (
            f"nothing reaches {FLOOR_TPS:g} tok/s without a large quality loss; fastest "
            "of the least lossy")
    return _best_quality(rows), "only large-loss variants fit; the least lossy"


def ranking(prefer: str) -> Callable[[Option], tuple[float, ...]]:
    """Sort key, best first, for the plain objectives (ties: quality, then the smaller file)."""
    if prefer == "speed":
        return lambda o: (-o.tokens_per_s, o.kld, o.size)
    if prefer == "energy":
        # Without a power figure J/token is unknown (0); speed is then the proxy, since at
        # constant device power energy per token falls as speed rises.
        return lambda o: (o.joules_per_token or 1.0 / max(o.tokens_per_s, 1e-9), o.kld, o.size)
    return lambda o: (o.kld, -o.tokens_per_s, o.size)


def pick(options: Sequence[Option], prefer: str) -> tuple[Option, str]:
    """The winner among fitting options for ``prefer``, and what made it win."""
    if prefer == "quality":
        return balanced(options)
    best = min(options, key=ranking(prefer))
    what = {"speed": "fastest", "energy": "least energy"}.get(prefer, "highest quality")
    return best, what
