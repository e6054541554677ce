"""Which agent can take which rollout, decided before a byte is sent. Pure.

An agent says what it is in GetVersion (its version, the contract it speaks, its capability
strings, its clock). One that answers UNIMPLEMENTED predates the RPC: its version is unknown
and it is taken to have edgefleet 0.1.0's capabilities (``agent.contract.LEGACY_CAPABILITIES``).
"""

from __future__ import annotations

from dataclasses import dataclass

from agent.contract import LEGACY_CAPABILITIES, Capability

# Past this, telemetry times and certificate validity (checked on each side's own clock)
# go wrong; the agent's trial deadline is counted on its own clock and is not affected.
MAX_CLOCK_SKEW_S = 30.0


@dataclass(frozen=True)
class AgentVersion:
    """What an agent said of itself (GetVersion), or what is assumed of an older one."""

    version: str = ""  # "" = unknown (an agent without GetVersion)
    contract: int = 1
    capabilities: frozenset[str] = frozenset(c.value for c in LEGACY_CAPABILITIES)
    clock_skew_s: float | None = None  # agent clock minus controller clock, None = unknown
    started_unix: float = 0.0  # when the agent process started, 0 = unknown

    @property
    def legacy(self) -> bool:
        return not self.version

    def describe(self) -> str:
        return (f"agent {self.version}" if self.version else
                "an agent older than 0.2 (no GetVersion: 0.1.0's capabilities assumed)")


def needed(stage_only: bool) -> frozenset[str]:
    """The capabilities a rollout needs of each device's agent."""
    need = {Capability.CHECK_FIT, Capability.ERROR_KINDS, Capability.SIGNED_MANIFEST,
            Capability.BOUND_MANIFEST}
    if stage_only:
        need.add(Capability.STAGE)
    else:  # loaded on trial with a deadline, committed, or given up to its own previous model
        need |= {Capability.TRIAL, Capability.TRIAL_DEADLINE, Capability.ABORT_TRIAL}
    return frozenset(c.value for c in need)


def can_share_blobs(agent: AgentVersion) -> bool:
    """Whether the agent can fetch a blob from its site's devices and serve its own to them
    (a rollout does not need it: an agent without it gets its copy from the controller)."""
    return Capability.PEER_TRANSFER.value in agent.capabilities


def missing(agent: AgentVersion, need: frozenset[str]) -> list[str]:
    """What ``agent`` lacks of ``need``, sorted (empty: it can take the rollout)."""
    return sorted(need - agent.capabilities)


def upgrade_needed(device: str, agent: AgentVersion, lacking: list[str]) -> tuple[str, str]:
    """(reason, hint) for a device whose agent lacks what the rollout needs."""
    return (f"{agent.describe()} lacks {', '.join(lacking)}, which this rollout needs; "
            "nothing was sent",
            f"upgrade its agent in place (store and certificates are kept): fleet device "
            f"upgrade {device}; then deploy again")


def skew_problem(skew_s: float | None) -> str:
    """'' when the agent's clock is close enough to the controller's."""
    if skew_s is None or abs(skew_s) <= MAX_CLOCK_SKEW_S:
        return ""
    return (f"clock {'ahead' if skew_s > 0 else 'behind'} by {abs(skew_s):.0f} s "
            f"(more than {MAX_CLOCK_SKEW_S:.0f} s)")


# An agent that holds several models, each in the slot of its name (GetStore.slots), takes
# aliases, "replace" and "pinned" in its signed manifest and unloads unpinned models
# least-recently-used
MULTI_MODEL = Capability.MULTI_MODEL.value


def holds_several(agent: AgentVersion) -> bool:
    """Whether the agent keeps a new model beside the others; an agent without it holds one
    model at a time, so a deploy there replaces what it runs."""
    return MULTI_MODEL in agent.capabilities
