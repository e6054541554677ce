"""What the selector predicted, kept beside what the devices measured.

``record_plan`` stores a rollout's per-device predictions (the deploy calls it once its plan
is made); for a model running where no rollout predicted it, ``lookup`` estimates with the same
cost model from the device's last probed (or declared) profile and stores that as
``source = "estimate"``, so it is computed once.
"""

from __future__ import annotations

from sqlmodel import Session, col, select

from controller.adapters.data_files import load_model
from controller.adapters.tables import Device, PlanPrediction
from controller.core.models import ModelSpec
from controller.core.select import Request, choose
from controller.errors import FleetError
from controller.services.context import Fleet, stored_profile
from controller.services.planning import DevicePlan

PROMPT_TOKENS = 128  # the prompt length `fleet plan` predicts TTFT for by default

Key = tuple[str, str, str]  # device, model, variant


def record_plan(fleet: Fleet, rollout: str, model: str, plans: list[DevicePlan],
                prompt_tokens: int = PROMPT_TOKENS) -> int:
    """Store the chosen variant's predicted tok/s, TTFT and J/token per device of a rollout;
    returns how many were stored. For the deploy to call right after planning."""
    rows = []
    for p in plans:
        chosen = p.choice.chosen if p.choice else None
        if p.choice is None or chosen is None:
            continue
        rows.append(PlanPrediction(
            rollout=rollout, device=p.device.name, model=model, variant=chosen.variant.name,
            sha256=chosen.variant.sha256, profile=p.choice.profile.name,
            tokens_per_s=chosen.tokens_per_s, ttft_ms=chosen.ttft_ms,
            joules_per_token=chosen.joules_per_token, prompt_tokens=prompt_tokens,
            ctx=p.choice.ctx, source="plan"))
    with Session(fleet.inventory.engine, expire_on_commit=False) as s:
        s.add_all(rows)
        s.commit()
    return len(rows)


def estimate(fleet: Fleet, device: Device, model: str, variant: str,
             specs: dict[str, ModelSpec | None] | None = None) -> PlanPrediction | None:
    """The cost model's prediction for ``variant`` on this device, or None when the model or
    the device's profile is unknown. ``specs`` caches catalog entries across calls."""
    specs = {} if specs is None else specs
    if model not in specs:
        try:
            specs[model] = fleet.artifacts.resolve(load_model(model))
        except FleetError:
            specs[model] = None
    spec = specs[model]
    if spec is None:
        return None
    profile = stored_profile(fleet, device)
    if profile is None:
        return None
    choice = choose(spec, profile, Request(ctx=spec.default_ctx, prompt_tokens=PROMPT_TOKENS),
                    device.name)
    cand = next((c for c in choice.candidates if c.variant.name == variant), None)
    if cand is None:
        return None
    return PlanPrediction(device=device.name, model=model, variant=variant,
                          sha256=cand.variant.sha256, profile=profile.name,
                          tokens_per_s=cand.tokens_per_s, ttft_ms=cand.ttft_ms,
                          joules_per_token=cand.joules_per_token, prompt_tokens=PROMPT_TOKENS,
                          ctx=spec.default_ctx, source="estimate")


def lookup(fleet: Fleet, devices: dict[str, Device], keys: set[Key]
           ) -> dict[Key, PlanPrediction]:
    """The newest prediction per (device, model, variant); estimated and stored when none."""
    found: dict[Key, PlanPrediction] = {}
    if not keys:
        return found
    names = sorted({k[0] for k in keys})
    with Session(fleet.inventory.engine, expire_on_commit=False) as s:
        rows = s.exec(select(PlanPrediction).where(col(PlanPrediction.device).in_(names))
                      .order_by(col(PlanPrediction.id))).all()
        for row in rows:  # newest last wins
            key = (row.device, row.model, row.variant)
            if key in keys:
                found[key] = row
        new = []
        specs: dict[str, ModelSpec | None] = {}
        for key in keys - set(found):
            device = devices.get(key[0])
            guess = (estimate(fleet, device, key[1], key[2], specs) if device and key[1]
                     else None)
            if guess is not None:
                new.append(guess)
                found[key] = guess
        if new:
            s.add_all(new)
            s.commit()
    return found
