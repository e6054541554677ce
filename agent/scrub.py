"""Background scrub: every stored blob re-hashed at a bounded rate, so bytes that rot under an
unchanged fingerprint (a failing SD card, a bit flipped below the file system) are found and
quarantined before the next activation trusts them.

``FLEET_AGENT_SCRUB_MBPS`` caps the read rate (default 8 MB/s; 0 turns the scrub off, as the
test suite does unless a test asks for it); ``FLEET_AGENT_SCRUB_INTERVAL_S`` is the pause
between passes (default a day) and ``FLEET_AGENT_SCRUB_DELAY_S`` the wait before the first
(default 5 minutes, so a restarted device serves first). The active model is checked first.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from agent.errors import BlobCorrupt, NotFound
from agent.store import ModelStore

log = logging.getLogger("edgefleet.agent")

DEFAULT_RATE_MB_S = 8.0
DEFAULT_INTERVAL_S = 24 * 3600.0
DEFAULT_DELAY_S = 300.0


def _env(name: str, default: float) -> float:
    try:
        return float(os.environ.get(name) or default)
    except ValueError:
        log.warning("%s=%r is not a number; using %g", name, os.environ.get(name), default)
        return default


@dataclass(frozen=True)
class ScrubStatus:
    rate_mb_s: float
    last_pass_finished_at: float
    bytes_hashed: int
    blobs_checked: int


class Scrubber:
    def __init__(self, store: ModelStore, on_corrupt: Callable[[str], None],
                 rate_mb_s: float | None = None, interval_s: float | None = None,
                 delay_s: float | None = None) -> None:
        self.store = store
        self.on_corrupt = on_corrupt
        self.rate_mb_s = _env("FLEET_AGENT_SCRUB_MBPS", DEFAULT_RATE_MB_S) \
            if rate_mb_s is None else rate_mb_s
        self.interval_s = _env("FLEET_AGENT_SCRUB_INTERVAL_S", DEFAULT_INTERVAL_S) \
            if interval_s is None else interval_s
        self.delay_s = _env("FLEET_AGENT_SCRUB_DELAY_S", DEFAULT_DELAY_S) \
            if delay_s is None else delay_s
        self._stop = threading.Event()
        self._last_pass = 0.0
        self._bytes = 0
        self._blobs = 0

    def start(self) -> None:
        if self.rate_mb_s > 0:
            threading.Thread(target=self._run, name="store-scrub", daemon=True).start()

    def stop(self) -> None:
        self._stop.set()

    def status(self) -> ScrubStatus:
        return ScrubStatus(self.rate_mb_s if self.rate_mb_s > 0 else 0.0, self._last_pass,
                           self._bytes, self._blobs)

    def _run(self) -> None:
        if self._stop.wait(self.delay_s):
            return
        while not self._stop.is_set():
            self.scrub_pass()
            if self._stop.wait(max(1.0, self.interval_s)):
                return

    def scrub_pass(self) -> list[str]:
        """Hash every blob once (pinned ones first); returns the ones found corrupt."""
        state = self.store.read_state()
        pinned = sorted(state.pinned)
        order = pinned + [sha for sha in self.store.blobs() if sha not in pinned]
        corrupt = []
        rate = self.rate_mb_s * 1e6 if self.rate_mb_s > 0 else 0.0
        for sha in order:
            if self._stop.is_set():
                break
            path = self.store.blobs_dir / sha
            try:
                size = path.stat().st_size
                self.store.recheck(sha, "scrub", rate, self._stop.is_set)
            except BlobCorrupt:
                corrupt.append(sha)
                self.on_corrupt(sha)
            except InterruptedError:
                break
            except (OSError, NotFound):
                continue  # collected or replaced while we read it
            else:
                self._bytes += size
            self._blobs += 1
        else:
            self._last_pass = time.time()
        return corrupt
