"""Two commands building the offline ladder at once on a fresh home (two first deploys, say)
both succeed with one intact copy of every file."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from agent.contract import sha256_file


def test_two_builds_at_once_share_one_ladder(tmp_path: Path) -> None:
    home = tmp_path / "fresh"
    env = dict(os.environ, FLEET_HOME=str(home))
    fleet = str(Path(sys.executable).parent / "fleet")
    runs = [subprocess.Popen([fleet, "model", "build", "tiny-llama"], env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            for _ in range(2)]
    for run in runs:
        out, err = run.communicate(timeout=600)
        assert run.returncode == 0, err[-2000:]
        assert "internal error" not in err
    folder = home / "models" / "tiny-llama"
    sums = dict(reversed(line.split("  ")) for line in
                (folder / "SHA256SUMS").read_text().splitlines())
    ggufs = sorted(p.name for p in folder.glob("*.gguf"))
    assert sorted(sums) == ggufs and len(ggufs) == 4
    for name, digest in sums.items():
        assert sha256_file(folder / name) == digest
    assert not list(folder.glob("*.tmp"))
