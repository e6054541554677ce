"""The controller's local model cache: where each variant's file is, and proof it is intact.

Sources in the catalog:

- ``local://MODEL/FILE``: built on this machine (the offline ``tiny-llama`` ladder).
- ``hf://REPO/FILE``: a Hugging Face file. Nothing is downloaded at deploy time; the file must be
  in the cache (``fleet model import``), so deploys work air-gapped and the same code path serves
  real and test models.
- an absolute path: used in place.

Every file is hashed before it is sent; a file whose hash no longer matches the one recorded
when it entered the cache (the ``SHA256SUMS`` file beside it, written by build and import) or
the catalog's is refused as corrupt. A GGUF file's reference output for the health gate is
recorded beside it too (``GOLDEN.json``, ``controller/golden.py``).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

from agent.contract import sha256_file
from controller import golden, settings, testmodels
from controller.adapters.gguf_header import read_architecture
from controller.adapters.inventory import SqlInventory
from controller.adapters.tables import ModelArtifact
from controller.core.models import ModelSpec, Variant
from controller.errors import ArtifactError, UsageError

TINY_BUILDER = "tiny-llama"
ONNX_BUILDER = "tiny-onnx"


@dataclass(frozen=True)
class LocalArtifact:
    path: Path
    sha256: str
    size_bytes: int


class ArtifactCache:
    def __init__(self, inventory: SqlInventory, root: Path | None = None) -> None:
        self.inventory = inventory
        self.root = root or settings.models_dir()

    @staticmethod
    def _sums_path(path: Path) -> Path:
        return path.parent / "SHA256SUMS"

    def _remembered(self, path: Path) -> str:
        """The hash written when ``path`` entered the cache, or ''."""
        try:
            lines = self._sums_path(path).read_text().splitlines()
        except FileNotFoundError:
            return ""
        for line in lines:
            digest, _, name = line.partition("  ")
            if name == path.name:
                return digest
        return ""

    def _remember(self, path: Path, digest: str) -> None:
        sums = self._sums_path(path)
        entries = {}
        if sums.exists():
            for line in sums.read_text().splitlines():
                d, _, name = line.partition("  ")
                if name:
                    entries[name] = d
        entries[path.name] = digest
        tmp = sums.with_suffix(".tmp")
        tmp.write_text("".join(f"{d}  {n}\n" for n, d in sorted(entries.items())))
        os.replace(tmp, sums)

    def path_for(self, model: ModelSpec, variant: Variant) -> Path:
        source = variant.source
        if source.startswith(("local://", "hf://")):
            return self.root / model.name / source.rsplit("/", 1)[-1]
        return Path(source)

    @contextlib.contextmanager
    def _locked(self, model: ModelSpec) -> Iterator[None]:
        """One writer per model folder at a time, across processes (two deploys on a fresh
        home both building the ladder), so files and SHA256SUMS are never written twice."""
        folder = self.root / model.name
        folder.mkdir(parents=True, exist_ok=True)
        with (folder / ".lock").open("w") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    def build_ladder(self, model: ModelSpec) -> list[LocalArtifact]:
        """Build a locally built model's whole ladder (the offline test models); what another
        process built meanwhile is kept."""
        with self._locked(model):
            if model.builder == ONNX_BUILDER:
                return self._build_onnx(model)
            return self._build_gguf(model)

    def _build_gguf(self, model: ModelSpec) -> list[LocalArtifact]:
        if model.builder != TINY_BUILDER:
            raise UsageError(f"{model.name} is not built locally",
                             hint="import its files with `fleet model import`")
        out = self.root / model.name
        out.mkdir(parents=True, exist_ok=True)
        base = next((v for v in model.variants if v.quant == "F16"), None)
        if base is None:
            raise ArtifactError(f"{model.name}: catalog has no F16 variant to quantize from")
        base_path = self.path_for(model, base)
        if not base_path.exists():
            testmodels.write_tiny_llama_f16(base_path)
            self._remember(base_path, sha256_file(base_path))
        built = [self._record(model, base, base_path)]
        for variant in model.variants:
            if variant is base:
                continue
            path = self.path_for(model, variant)
            if not path.exists():
                testmodels.quantize_gguf(self.verify(model, base).path, path, variant.name)
                self._remember(path, sha256_file(path))
            built.append(self._record(model, variant, path))
        for art in built:
            golden.ensure(art.path, art.sha256)
        return built

    def _build_onnx(self, model: ModelSpec) -> list[LocalArtifact]:
        fp32 = next(v for v in model.variants if v.quant == "FP32")
        fp32_path = self.path_for(model, fp32)
        fp32_path.parent.mkdir(parents=True, exist_ok=True)
        if not fp32_path.exists():
            testmodels.write_tiny_onnx_fp32(fp32_path)
            self._remember(fp32_path, sha256_file(fp32_path))
        built = [self._record(model, fp32, fp32_path)]
        for variant in model.variants:
            if variant is fp32:
                continue
            path = self.path_for(model, variant)
            if not path.exists():
                testmodels.quantize_onnx_int8(self.verify(model, fp32).path, path)
                self._remember(path, sha256_file(path))
            built.append(self._record(model, variant, path))
        return built

    def import_file(self, model: ModelSpec, variant: Variant, src: Path) -> LocalArtifact:
        """Copy a file fetched elsewhere into the cache, checking the catalog's hash if known."""
        if not src.is_file():
            raise UsageError(f"no such file: {src}", hint="give the path of the downloaded file")
        digest = sha256_file(src)
        if variant.sha256 and digest != variant.sha256:
            raise ArtifactError(f"{src} hashes to {digest[:12]}, catalog says "
                                f"{variant.sha256[:12]}; not imported",
                                hint="download the file again")
        dst = self.path_for(model, variant)
        with self._locked(model):
            tmp = dst.with_suffix(f".{os.getpid()}.tmp")
            shutil.copyfile(src, tmp)
            tmp.replace(dst)
            self._remember(dst, digest)
            golden.ensure(dst, digest)
        return self._record(model, variant, dst, digest)

    def _record(self, model: ModelSpec, variant: Variant, path: Path,
                digest: str | None = None) -> LocalArtifact:
        existing = self.inventory.artifact(model.name, variant.name)
        if existing and existing.path == str(path) and not digest:
            return self.verify(model, variant)
        digest = digest or self.verify_file(model, variant, path)
        size = path.stat().st_size
        self.inventory.record_artifact(ModelArtifact(
            model=model.name, variant=variant.name, sha256=digest, size_bytes=size,
            path=str(path)))
        return LocalArtifact(path, digest, size)

    def local(self, model: ModelSpec, variant: Variant) -> LocalArtifact | None:
        """The cached file without hashing it, or None."""
        record = self.inventory.artifact(model.name, variant.name)
        if record and Path(record.path).is_file():
            return LocalArtifact(Path(record.path), record.sha256, record.size_bytes)
        return None

    def verify(self, model: ModelSpec, variant: Variant) -> LocalArtifact:
        """Hash the cached file now; refuse it if it changed since it entered the cache."""
        record = self.inventory.artifact(model.name, variant.name)
        path = Path(record.path) if record else self.path_for(model, variant)
        if not path.is_file():
            hint = (f"`fleet model build {model.name}`" if model.builder else
                    f"download {variant.source} on a connected machine, then "
                    f"`fleet model import {model.name} {variant.name} FILE`")
            raise ArtifactError(f"{model.name} {variant.name} is not in the local model cache "
                                f"({path})", hint=hint)
        digest = self.verify_file(model, variant, path, record.sha256 if record else "")
        if record is None:
            return self._record(model, variant, path, digest)
        return LocalArtifact(path, digest, path.stat().st_size)

    def verify_file(self, model: ModelSpec, variant: Variant, path: Path,
                    recorded: str = "") -> str:
        """Hash ``path``; raise ArtifactError unless it matches every hash known for it."""
        digest = sha256_file(path)
        for expected in (variant.sha256, self._remembered(path), recorded):
            if expected and digest != expected:
                raise ArtifactError(
                    f"{path} is corrupt: sha256 {digest[:12]}, expected {expected[:12]}; "
                    "refusing to send it",
                    hint=f"delete it and rebuild or re-import {model.name} {variant.name}",
                )
        return digest

    def resolve(self, model: ModelSpec) -> ModelSpec:
        """The catalog entry with real file sizes and GGUF-header architecture where at hand."""
        variants = []
        arch = model.arch
        for variant in model.variants:
            art = self.local(model, variant)
            if art:
                variant = replace(variant, size_bytes=art.size_bytes)
                if variant.format == "gguf" and arch is model.arch:
                    header = read_architecture(art.path)
                    arch = replace(header, active_params=model.arch.active_params)
            variants.append(variant)
        return replace(model, arch=arch, variants=tuple(variants))
