"""Taking one model off a device that runs several (`fleet undeploy`): what to unload, or why
not. Pure: the device's slots in, a decision out.

A model is taken off by name, never by alias (an alias moves between models; the name says
which one goes). A model on trial belongs to a rollout in flight, which decides it. The last
model of a device is taken off only when asked explicitly: the device then serves nothing.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Held:
    """An active model on the device, as its store reports it."""

    name: str
    sha256: str
    aliases: tuple[str, ...] = ()
    on_trial: bool = False


@dataclass(frozen=True)
class UndeployStep:
    sha256: str = ""  # what to unload ("" when nothing is)
    status: str = "remove"  # remove | absent | refused
    reason: str = ""
    hint: str = ""


def decide(active: list[Held], name: str, allow_empty: bool) -> UndeployStep:
    """What to do on one device whose active models are ``active``."""
    slot = next((s for s in active if s.name == name), None)
    if slot is None:
        owner = next((s for s in active if name in s.aliases), None)
        if owner is not None:
            return UndeployStep(status="refused", reason=f"{name!r} is an alias of "
                                f"{owner.name}, not a model", hint=f"fleet undeploy {owner.name}"
                                " takes that model off (its aliases go with it)")
        return UndeployStep(status="absent", reason=f"{name} is not on the device")
    if slot.on_trial:
        return UndeployStep(status="refused", reason=f"{name} is on trial in a rollout",
                            hint="let the rollout finish, or `fleet rollouts abort` it first")
    if len(active) == 1 and not allow_empty:
        return UndeployStep(status="refused", reason=f"{name} is the only model on the device:"
                            " it would serve nothing", hint="pass --allow-empty to take it off "
                            "anyway, or deploy another model first")
    others = ", ".join(s.name for s in active if s is not slot)
    return UndeployStep(slot.sha256, "remove", f"{name} taken off; "
                        + (f"still serving {others}" if others else "it serves no model now"))
