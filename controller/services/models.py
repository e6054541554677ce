"""Catalog use-cases: resolve a model to what is really on disk, build the offline ladder."""

from __future__ import annotations

from controller.adapters.data_files import load_model
from controller.artifacts import LocalArtifact
from controller.core.models import ModelSpec
from controller.services.context import Fleet


def ensure_model(fleet: Fleet, name: str) -> ModelSpec:
    """The catalog entry, with locally built ladders built and real sizes/architecture read."""
    model = load_model(name)
    if model.builder and any(fleet.artifacts.local(model, v) is None for v in model.variants):
        fleet.artifacts.build_ladder(model)
    return fleet.artifacts.resolve(model)


def build(fleet: Fleet, name: str) -> list[LocalArtifact]:
    return fleet.artifacts.build_ladder(load_model(name))
