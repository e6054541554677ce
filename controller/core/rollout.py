"""Which devices of a rollout may start now: canaries per artifact first, then the rest, and a
halt once the new model has failed on too many devices.

An outcome is evidence about the model only when the model was tried on the device: it ran
healthy (or was already running there), or it failed to load or failed its health check. An
unreachable device, a full disk or a cut link say nothing about the model; such a canary is
replaced by the next device waiting for the same artifact. Canaries are counted per artifact
because a Q8_0 that cannot load is not vouched for by a healthy Q4_K_M.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from enum import Enum

_BUDGET = re.compile(r"(\d+)(%?)")


class Evidence(Enum):
    HEALTHY = "healthy"
    MODEL_FAILED = "model-failed"
    NONE = "none"


@dataclass(frozen=True)
class RolloutPolicy:
    canary: int = 1  # devices per artifact that must run it healthy before its others start
    max_failures: int = 1  # model failures that stop new devices from starting; 0 = never


class RolloutGate:
    """Bookkeeping of one rollout. ``artifacts[i]`` names what device ``i`` receives; "" for a
    device that is not contacted (no variant fits, no profile): it may always start."""

    def __init__(self, artifacts: list[str], policy: RolloutPolicy,
                 healthy: dict[str, int] | None = None, prior_failures: int = 0) -> None:
        """``healthy`` and ``prior_failures`` carry what earlier waves (or this wave before a
        resume) already showed: artifacts vouched for, model failures counted."""
        self.artifacts = artifacts
        self.policy = policy
        self._waiting = dict.fromkeys(range(len(artifacts)))  # an ordered set, in plan order
        self.running: dict[str, int] = {}  # artifact -> devices receiving it right now
        self.healthy: dict[str, int] = dict(healthy or {})
        self.failures: list[int] = []
        self.prior_failures = prior_failures
        self.stopped = False  # by the operator (Ctrl-C): finish what runs, start nothing

    @property
    def halted(self) -> bool:
        return self.stopped or self.failed_out

    @property
    def failed_out(self) -> bool:
        """The failure budget is spent (as opposed to an operator's stop)."""
        return 0 < self.policy.max_failures <= len(self.failures) + self.prior_failures

    def stop(self) -> None:
        self.stopped = True

    def startable(self, limit: int | None = None) -> list[int]:
        """Devices that may start now, in order, at most ``limit`` of them."""
        ready: list[int] = []
        slots: dict[str, int] = {}
        for i in self._waiting:
            if limit is not None and len(ready) >= limit:
                break
            artifact = self.artifacts[i]
            if not artifact:
                ready.append(i)  # never contacted: it may always start
                continue
            if self.halted:
                continue
            if artifact not in slots:
                slots[artifact] = (self.policy.canary - self.healthy.get(artifact, 0)
                                   - self.running.get(artifact, 0))
            if self._vouched(artifact) or slots[artifact] > 0:
                slots[artifact] -= 1
                ready.append(i)
        return ready

    def _vouched(self, artifact: str) -> bool:
        return self.healthy.get(artifact, 0) >= self.policy.canary

    def start(self, i: int) -> None:
        del self._waiting[i]
        artifact = self.artifacts[i]
        self.running[artifact] = self.running.get(artifact, 0) + 1

    def finish(self, i: int, evidence: Evidence) -> None:
        artifact = self.artifacts[i]
        self.running[artifact] -= 1
        if evidence is Evidence.HEALTHY:
            self.healthy[artifact] = self.healthy.get(artifact, 0) + 1
        elif evidence is Evidence.MODEL_FAILED:
            self.failures.append(i)

    def waiting(self) -> list[int]:
        return list(self._waiting)


def failure_budget(spec: str, contacted: int) -> int:
    """``--max-failures`` as given, a count ("3") or a share of the devices the rollout
    contacts ("10%", rounded up, at least 1), as a count; 0 = never stop. ValueError when
    it is neither."""
    found = _BUDGET.fullmatch(spec.strip())
    if not found:
        raise ValueError(spec)
    value = int(found.group(1))
    if not found.group(2):
        return value
    if value > 100:
        raise ValueError(spec)
    return 0 if value == 0 else max(1, math.ceil(contacted * value / 100))
