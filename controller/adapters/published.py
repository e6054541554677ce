"""Load the published-measurement validation set: a CSV of rows and the model definitions
they name (a directory of catalog-format TOML files, then the catalog itself).

CSV columns: ``id, split, device_class, profile, model, variant, runtime, backend, threads,
metric, n_ctx, measured, source, notes`` (``docs/selection.md`` explains each). A malformed
row is refused naming the file, the row and the field.
"""

from __future__ import annotations

import csv
import sys
from pathlib import Path

from controller.adapters.data_files import load_catalog, load_profiles
from controller.core.catalog import parse_model
from controller.core.fitting import METRICS, SPLITS, PublishedRow
from controller.core.models import ModelSpec
from controller.core.speed import BACKENDS
from controller.errors import InvalidData

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

COLUMNS = ("id", "split", "device_class", "profile", "model", "variant", "runtime", "backend",
           "threads", "metric", "n_ctx", "measured", "source", "notes")


def load_models(models_dir: Path | None) -> dict[str, ModelSpec]:
    """The catalog, overlaid by the validation set's own model definitions."""
    models = dict(load_catalog())
    if models_dir is not None and models_dir.is_dir():
        for path in sorted(models_dir.glob("*.toml")):
            with path.open("rb") as fh:
                spec = parse_model(tomllib.load(fh), str(path))
            models[spec.name] = spec
    return models


def load_rows(csv_path: Path, models_dir: Path | None = None) -> list[PublishedRow]:
    profiles = load_profiles()
    models = load_models(models_dir)
    rows: list[PublishedRow] = []
    seen: set[str] = set()
    with csv_path.open(newline="") as fh:
        reader = csv.DictReader(fh)
        missing = [c for c in COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise InvalidData(f"{csv_path}: missing columns {', '.join(missing)}")
        for n, raw in enumerate(reader, start=2):
            where = f"{csv_path}:{n}"

            def bad(field: str, why: str, where: str = where) -> InvalidData:
                return InvalidData(f"{where}: field '{field}' {why}")

            if raw["id"] in seen:
                raise bad("id", f"repeats {raw['id']!r}")
            seen.add(raw["id"])
            if raw["split"] not in SPLITS:
                raise bad("split", f"must be one of {', '.join(SPLITS)}")
            if raw["metric"] not in METRICS:
                raise bad("metric", f"must be one of {', '.join(METRICS)}")
            if raw["backend"] not in BACKENDS:
                raise bad("backend", f"must be one of {', '.join(BACKENDS)}")
            if raw["profile"] not in profiles:
                raise bad("profile", f"names no known profile ({raw['profile']!r})")
            model = models.get(raw["model"])
            if model is None:
                raise bad("model", f"names no known model ({raw['model']!r})")
            variant = model.variant(raw["variant"])
            if variant is None:
                raise bad("variant", f"is not a variant of {model.name}")
            if not raw["source"].startswith("http"):
                raise bad("source", "must be the URL of the publication")
            try:
                threads, n_ctx = int(raw["threads"]), int(raw["n_ctx"])
                measured = float(raw["measured"])
            except ValueError as exc:
                raise bad("threads/n_ctx/measured", "must be numbers") from exc
            if measured <= 0 or n_ctx < 0 or threads < 0:
                raise bad("measured", "must be > 0 (and n_ctx, threads >= 0)")
            rows.append(PublishedRow(
                id=raw["id"], split=raw["split"], device_class=raw["device_class"],
                profile=profiles[raw["profile"]], arch=model.arch, variant=variant,
                runtime=raw["runtime"], backend=raw["backend"], threads=threads,
                metric=raw["metric"], n_ctx=n_ctx, measured=measured, source=raw["source"],
                notes=raw.get("notes") or ""))
    return rows
