"""The link to a device: 20 % packet loss (iptables `statistic`) and cuts longer than the
stall timeout (the veth link set down, then up), single- and multi-channel."""

from __future__ import annotations

import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from controller import lab_netns
from tests.conftest import Cli, Result
from tests.faults.conftest import (
    MIB,
    check_invariants,
    deploy,
    lab_device,
    on_disk,
    store_dir,
    variant_sha,
    wait_for,
)


@pytest.fixture
def lossy(home: Path) -> Iterator[Callable[[str, float], None]]:
    """Drop a share of the packets a lab device receives (in its namespace)."""
    rules: list[tuple[str, list[str]]] = []

    def drop(name: str, share: float) -> None:
        netns = lab_device(home, name).netns
        rule = ["INPUT", "-m", "statistic", "--mode", "random", "--probability", str(share),
                "-j", "DROP"]
        subprocess.run(["ip", "netns", "exec", netns, "iptables", "-A", *rule], check=True)
        rules.append((netns, rule))

    yield drop
    for netns, rule in rules:  # gone with the namespace anyway; explicit when it outlives
        subprocess.run(["ip", "netns", "exec", netns, "iptables", "-D", *rule],
                       capture_output=True)


def test_a_lossy_link_delivers_verified_bytes(cli: Cli, lab: Callable[..., Result],
                                              home: Path,
                                              lossy: Callable[[str, float], None]) -> None:
    lab("--devices", "2", "--netns", "--profiles", "lab-pi4-2gb")
    for name in ("lab-1", "lab-2"):
        lossy(name, 0.2)
    new, size = variant_sha("q2_k")
    result = deploy(cli, "tiny-llama", "--group", "lab", "--canary", "0", "--retries", "6")
    assert result.code == 0, result.err
    for name in ("lab-1", "lab-2"):
        outcome = result.outcomes[name]
        assert outcome["status"] == "committed"
        assert size <= int(outcome["bytes_sent"]) < size * 1.5
    check_invariants({"lab-1": {new}, "lab-2": {new}})


@pytest.mark.parametrize("streams", [1, 4])
def test_a_cut_longer_than_the_stall_timeout_is_detected_on_every_channel(
        cli: Cli, lab: Callable[..., Result], home: Path, streams: int,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLEET_SSH_STALL_TIMEOUT", "2")
    monkeypatch.setenv("FLEET_PARALLEL_MIN_BYTES", str(8 * MIB))
    lab("--devices", "1", "--netns", "--profiles", "lab-orin-nano-8gb")
    link = lab_device(home).link
    assert link is not None
    new, size = variant_sha("q8_0")
    part = store_dir(home) / "incoming" / f"{new}.part"
    cut = threading.Event()

    def cut_link() -> None:  # the device's Wi-Fi goes for 8 s, four stall timeouts
        try:
            wait_for(lambda: on_disk(part) >= 8 * MIB, "the upload")
        except AssertionError:
            return
        lab_netns.set_up(link, False)
        cut.set()
        time.sleep(8)
        lab_netns.set_up(link, True)

    cutter = threading.Thread(target=cut_link)
    cutter.start()
    try:
        result = deploy(cli, "tiny-llama", "--group", "lab", "--streams", str(streams),
                        "--bwlimit", "6", "--retries", "8")
    finally:
        cutter.join()
        lab_netns.set_up(link, True)
    assert cut.is_set()
    assert result.code == 0, result.err
    outcome = result.outcomes["lab-1"]
    reason = str(outcome["reason"])
    # without a stall watch over every channel nothing would be noticed: TCP just waits
    assert "no write acknowledged for 2 s" in reason, reason
    assert size <= int(outcome["bytes_sent"]) < size * 1.3
    check_invariants({"lab-1": {new}})
