"""Every model a device runs (several per device): what the controller keeps of each, and how a
committed deploy or a rollback changes the set. Pure.

An agent that holds several models has one slot per model name; a model deployed beside the
others takes its name's slot (a new variant of the same model replaces the old one there),
takes the aliases it was given from whichever model held them, and with ``replace`` is the
only model left. An agent of one model always ends with the one model it loaded.
"""

from __future__ import annotations

from dataclasses import dataclass, replace


@dataclass(frozen=True)
class DeviceModel:
    name: str
    variant: str = ""
    sha256: str = ""
    aliases: tuple[str, ...] = ()  # sorted
    pinned: bool = False
    resident: bool = False  # loaded in a worker now (else it loads on its next request)
    on_trial: bool = False
    memory_bytes: int = 0  # what the agent's memory guard counts for it
    last_used_at: float = 0.0  # unix seconds of its last request (0: none known)
    adapter: str = ""  # the LoRA adapter its requests get by default ("": the base alone)


def committed(models: list[DeviceModel], new: DeviceModel, replace_others: bool
              ) -> list[DeviceModel]:
    """The device's models once ``new`` is committed: beside the others (its aliases moved
    to it), or alone with ``replace_others``; sorted by name."""
    if replace_others:
        return [new]
    taken = set(new.aliases)
    kept = [replace(m, aliases=tuple(a for a in m.aliases if a not in taken))
            for m in models if m.name != new.name]
    return sorted([*kept, new], key=lambda m: m.name)


def rolled_back(models: list[DeviceModel], name: str, restored: DeviceModel | None
                ) -> list[DeviceModel]:
    """The device's models once the model on trial in ``name``'s slot was given up:
    ``restored`` back in the slot, or the slot empty. ``restored`` may be another model
    (a new model given up: the device names what serves by default), whose row it renews."""
    if restored is not None and any(m.name == restored.name and m.sha256 == restored.sha256
                                    for m in models if m.name != name):
        restored = None  # another model, already known as it is: its row stays
    gone = {name, restored.name} if restored else {name}
    kept = [m for m in models if m.name not in gone]
    return sorted([*kept, *([restored] if restored else [])], key=lambda m: m.name)


def with_adapter(models: list[DeviceModel], base_sha256: str, adapter: str
                 ) -> list[DeviceModel]:
    """The device's models once ``adapter`` is committed on the model whose file is
    ``base_sha256`` (the others keep theirs: adapters are held per base)."""
    return [replace(m, adapter=adapter) if m.sha256 == base_sha256 else m for m in models]


def taken_off(models: list[DeviceModel], name: str) -> list[DeviceModel]:
    """The device's models once ``name`` was taken off (`fleet undeploy`)."""
    return [m for m in models if m.name != name]


def describe(m: DeviceModel) -> str:
    """"tiny-llama+kiosk q4_k_m (assistant, pinned, resident)": one model (and the adapter
    its requests get by default), for a terminal."""
    notes = [*m.aliases, *(["pinned"] if m.pinned else []),
             "resident" if m.resident else "unloaded", *(["on trial"] if m.on_trial else [])]
    name = f"{m.name}+{m.adapter}" if m.adapter else m.name
    return f"{name} {m.variant}".strip() + f" ({', '.join(notes)})"
