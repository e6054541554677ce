"""A model file whose output is not a model's output: NaN weights load, smoke-test and
"generate" empty text; the health gate's output check catches them and rolls back."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

from controller.testmodels import TinyLlamaSpec, write_tiny_llama_f16
from tests.conftest import Cli, Result
from tests.faults.conftest import check_invariants, deploy, get_store, variant_sha


def test_a_model_whose_logits_are_nan_is_rolled_back(cli: Cli, lab: Callable[..., Result],
                                                     tmp_path: Path) -> None:
    lab("--devices", "1", "--profiles", "lab-n100-16gb")
    first = deploy(cli, "tiny-llama", "--group", "lab", "--prefer", "speed")
    assert first.code == 0, first.err
    good, _ = variant_sha("q2_k")
    broken = tmp_path / "tiny-nan-f16.gguf"
    write_tiny_llama_f16(broken, TinyLlamaSpec(output_norm=math.nan))  # a bad export
    assert cli("model", "add", "tiny-nan", str(broken)).code == 0
    result = deploy(cli, "tiny-nan", "--group", "lab", "--ctx", "512", "--replace")
    assert result.code == 1
    outcome = result.outcomes["lab-1"]
    assert outcome["status"] == "rolled-back", outcome
    assert "logits are not finite" in str(outcome["reason"]), outcome["reason"]
    check_invariants({"lab-1": {good}})
    assert get_store().quarantined == []  # its bytes were intact: the model is at fault
