"""Stop sequences over streamed text: pure, so the holding-back logic is unit-tested alone.

Text that could still turn into a stop sequence is held back until the next piece decides it,
so a client never sees the beginning of a stop string (OpenAI and llama.cpp behave the same).
"""

from __future__ import annotations


class StopScanner:
    def __init__(self, stops: tuple[str, ...]) -> None:
        self.stops = tuple(s for s in stops if s)
        self._held = ""
        self.stopped = False

    def feed(self, text: str) -> str:
        """Add generated text; return what may be shown now. Sets ``stopped`` when a stop
        sequence appeared (the text before it is returned, the rest is dropped)."""
        if not self.stops:
            return text
        buf = self._held + text
        # the stop sequence completed first wins (then the longer one): the same cut
        # whatever the pieces are
        found = [(i + len(s), i) for s in self.stops if (i := buf.find(s)) >= 0]
        if found:
            cut = min(found)[1]
            self._held = ""
            self.stopped = True
            return buf[:cut]
        keep = 0
        for s in self.stops:
            for k in range(min(len(s) - 1, len(buf)), keep, -1):
                if buf.endswith(s[:k]):
                    keep = k
                    break
        self._held = buf[len(buf) - keep:] if keep else ""
        return buf[: len(buf) - keep]

    def flush(self) -> str:
        """At the end of generation: the held text was not a stop sequence after all."""
        held, self._held = self._held, ""
        return held
