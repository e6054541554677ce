"""Where a deployed model goes on a device: beside the models already there (the default on
an agent that holds several), or instead of them (``--replace``, and always on an agent of
one model), with the aliases it takes and pinned or not.

``for_agent`` turns what the operator asked into what one device's agent is told, or says why
that agent cannot do it; ``settled`` says whether the device already runs the model the way
asked (nothing to load).
"""

from __future__ import annotations

import re

from controller.core.compat import AgentVersion, holds_several
from controller.errors import UsageError
from controller.services.ports import Placement, StoreView

# the names requests use (OpenAI "model", Generate.model): no spaces, no "+" (MODEL+ADAPTER)
ALIAS = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,63}")


def check_aliases(model: str, aliases: tuple[str, ...]) -> tuple[str, ...]:
    """The aliases, sorted and without repeats; raises UsageError for a bad one."""
    for alias in aliases:
        if not ALIAS.fullmatch(alias):
            raise UsageError(f"--alias {alias!r} is not a model name requests can use",
                             hint="letters, digits and . _ : - (up to 64), e.g. --alias "
                             "assistant")
        if alias == model:
            raise UsageError(f"--alias {alias!r} is the model's own name",
                             hint="an alias is another name for it, e.g. --alias assistant")
    return tuple(sorted(set(aliases)))


def describe(placement: Placement) -> str:
    """How the model goes on, for a rollout's reasons."""
    how = "in place of every other model" if placement.replace else "beside the other models"
    extra = [f"as {', '.join(placement.aliases)}"] if placement.aliases else []
    return ", ".join([how, *extra, *(["pinned"] if placement.pinned else [])])


def for_agent(device: str, agent: AgentVersion, asked: Placement
              ) -> tuple[Placement | None, str, str]:
    """(what the agent is told, why not, hint). ``None`` is today's manifest, for an agent of
    one model: it replaces what runs there, which is what ``--replace`` asks and the only
    thing it can do; aliases and pinning it cannot keep, so they are refused, not dropped."""
    if holds_several(agent):
        return asked, "", ""
    if asked.aliases or asked.pinned:
        asked_for = " and ".join(
            x for x in (f"--alias {', '.join(asked.aliases)}" if asked.aliases else "",
                        "--pin" if asked.pinned else "") if x)
        return (None, f"{agent.describe()} holds one model at a time and cannot take "
                f"{asked_for}; nothing was sent",
                f"upgrade its agent in place: fleet device upgrade {device}; or deploy "
                "without --alias/--pin (it then replaces the model it runs)")
    return None, "", ""


def settled(store: StoreView, model: str, sha256: str, asked: Placement | None) -> bool:
    """Whether the device runs ``sha256`` committed as model ``model`` the way asked: its
    aliases held, pinned as asked, and with ``replace`` no other model active. An agent of
    one model (no slots) is settled when the model is active and committed."""
    mine = store.for_model(model)
    if mine.active != sha256 or mine.on_trial:
        return False
    if not store.slots or asked is None:
        return True
    slot = next(s for s in store.slots if s.name == model)
    return (set(asked.aliases) <= set(slot.aliases) and slot.pinned == asked.pinned
            and not (asked.replace and store.others(model)))
