"""Reference outputs of cached model files: recorded when a file enters the cache (built or
imported), read by the health gate.

The numbers come from the same code the device runs (``agent.runtimes.llama_check``), in a
runtime worker process like the agent's, so a file that crashes llama.cpp cannot take the
controller down. They are kept in ``GOLDEN.json`` beside the cache's ``SHA256SUMS``, keyed by
file name and tied to the file's sha256. Without llama-cpp-python on the controller (it is in
the ``llama`` extra) nothing is recorded and the gate checks finiteness and non-empty output
only.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
from dataclasses import asdict
from pathlib import Path
from typing import Any

from controller.core.output_check import GOLDEN_PROMPT, GOLDEN_TOKENS, OutputSample, Reference

log = logging.getLogger("edgefleet.controller")
SIDE_FILE = "GOLDEN.json"
N_CTX = 512


def sample_from(fields: dict[str, Any]) -> OutputSample:
    """An OutputSample from VerifyOutput's fields (a dict, or the response's attributes)."""
    return OutputSample(
        finite=bool(fields["logits_finite"]), prompt_tokens=int(fields["prompt_tokens"]),
        mean_logprob=float(fields["prompt_mean_logprob"]),
        tokens=tuple(int(t) for t in fields["tokens"]),
        margins=tuple(float(m) for m in fields["margins"]), text=str(fields["text"]),
        problem=str(fields.get("problem", "")))


def measure(path: Path) -> OutputSample | None:
    """Run the golden prompt through ``path`` in a worker process; None when this machine
    has no llama.cpp or the runtime refuses the file."""
    if importlib.util.find_spec("llama_cpp") is None:
        return None
    from agent.errors import AgentError
    from agent.workers import Worker

    try:
        worker = Worker("gguf", path, N_CTX, max(1, min(4, os.cpu_count() or 1)))
    except AgentError as exc:
        log.warning("no reference output for %s: %s", path.name, exc)
        return None
    try:
        fields = worker.call("verify_output", GOLDEN_PROMPT, GOLDEN_TOKENS)
    except AgentError as exc:
        log.warning("no reference output for %s: %s", path.name, exc)
        return None
    finally:
        worker.stop()
    return sample_from(fields)


def record(path: Path, sha256: str) -> Reference | None:
    """Measure ``path`` and keep the result beside it."""
    sample = measure(path)
    if sample is None:
        return None
    try:
        import llama_cpp

        version = f"llama-cpp-python {llama_cpp.__version__}"
    except ImportError:  # pragma: no cover - measure() needed it
        version = ""
    reference = Reference(sha256, GOLDEN_PROMPT, sample, version)
    if not sample.finite:
        log.warning("%s: %s", path.name, sample.problem)
    side = path.parent / SIDE_FILE
    entries = _read(side)
    entries[path.name] = {"sha256": sha256, "prompt": GOLDEN_PROMPT,
                          "recorded_with": version, "sample": asdict(sample)}
    tmp = side.with_suffix(".tmp")
    tmp.write_text(json.dumps(entries, indent=1, sort_keys=True))
    os.replace(tmp, side)
    return reference


def load(path: Path, sha256: str) -> Reference | None:
    """The reference recorded for ``path`` when it had ``sha256``, or None."""
    entry = _read(path.parent / SIDE_FILE).get(path.name)
    if not entry or entry.get("sha256") != sha256:
        return None
    try:
        s = entry["sample"]
        sample = OutputSample(bool(s["finite"]), int(s["prompt_tokens"]),
                              float(s["mean_logprob"]), tuple(int(t) for t in s["tokens"]),
                              tuple(float(m) for m in s["margins"]), str(s["text"]),
                              str(s.get("problem", "")))
        return Reference(sha256, str(entry["prompt"]), sample,
                         str(entry.get("recorded_with", "")))
    except (KeyError, TypeError, ValueError):
        log.warning("ignoring a malformed reference for %s in %s", path.name, SIDE_FILE)
        return None


def _read(side: Path) -> dict[str, Any]:
    try:
        data = json.loads(side.read_text())
    except (FileNotFoundError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def ensure(path: Path, sha256: str) -> Reference | None:
    """The recorded reference, recording it first if there is none for these bytes."""
    if path.suffix != ".gguf":
        return None
    return load(path, sha256) or record(path, sha256)
