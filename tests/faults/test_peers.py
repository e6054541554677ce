"""Devices of one site on a real LAN (namespaces on one bridge behind one uplink,
`fleet lab up --netns --site-lan`): a device that cannot reach its peers (iptables in its
namespace drops the LAN, not the uplink) gets its copy from the controller, and the devices
planned to read from it read from the next one up; a peer whose link dies mid-chain is passed
over and catches up from its own partial copy when it is back. Every device ends with the
verified blob, and the invariants of this suite hold."""

from __future__ import annotations

import json
import subprocess
import threading
from collections.abc import Callable
from pathlib import Path

from agent.contract import sha256_file
from controller import lab_netns
from tests.conftest import Cli, Result
from tests.faults.conftest import (
    check_invariants,
    deploy,
    lab_device,
    on_disk,
    store_dir,
    variant_sha,
    wait_for,
)


def test_a_device_that_cannot_reach_its_peers_gets_its_copy_from_the_controller(
        cli: Cli, lab: Callable[..., Result], home: Path) -> None:
    lab("--devices", "3", "--netns", "--site-lan", "--profiles", "lab-orin-nano-8gb")
    netns = lab_device(home, "lab-2").netns
    lan = f"{lab_netns.SITE_NET}.0/24"
    for chain, side in (("INPUT", "-s"), ("OUTPUT", "-d")):  # the uplink stays open
        for address, verdict in ((lab_netns.SITE_HOST, "ACCEPT"), (lan, "DROP")):
            subprocess.run(["ip", "netns", "exec", netns, "iptables", "-A", chain, side,
                            address, "-j", verdict], check=True)
    new, size = variant_sha("q8_0")
    result = deploy(cli, "tiny-llama", "--group", "lab", "--canary", "0", "--concurrency", "3")
    assert result.code == 0, result.err
    out = result.outcomes
    assert {o["status"] for o in out.values()} == {"committed"}, out
    assert {o["site"] for o in out.values()} == {"lab-lan"}
    assert out["lab-1"]["bytes_sent"] == size  # the seed
    assert out["lab-2"]["bytes_sent"] == size and out["lab-2"]["bytes_from_peers"] == 0
    assert out["lab-3"]["bytes_sent"] == 0 and out["lab-3"]["peer_bytes"] == {"lab-1": size}
    events = " ".join(cli("rollouts", "show", "--events",
                          json.loads(result.out)["rollout"]).out.split())
    assert "cannot reach any peer: lab-1" in events
    check_invariants({f"lab-{i}": {new} for i in (1, 2, 3)})


def test_a_peer_whose_link_dies_mid_chain_is_passed_over_and_catches_up_later(
        cli: Cli, lab: Callable[..., Result], home: Path) -> None:
    """No RST, no error: lab-2 just vanishes from the LAN while lab-3 reads from it. The
    gRPC keepalive notices (~20 s); lab-3 resumes from lab-1 where its verified copy ends."""
    lab("--devices", "3", "--netns", "--site-lan", "--profiles", "lab-orin-nano-8gb")
    new, size = variant_sha("q8_0")
    link = lab_device(home, "lab-2").link
    assert link is not None
    part = store_dir(home, "lab-3") / "incoming" / f"{new}.part"

    def cut() -> None:
        try:
            wait_for(lambda: on_disk(part) >= size // 5, "lab-3 to read from lab-2", 120)
        except AssertionError:
            return
        lab_netns.set_up(link, False)

    cutter = threading.Thread(target=cut)
    cutter.start()
    # the seed paced at 2 MB/s: the chain runs ~20 s behind it, long enough to cut lab-2
    result = deploy(cli, "tiny-llama", "--group", "lab", "--stage-only", "--concurrency", "3",
                    "--bwlimit", "2")
    cutter.join()
    out = result.outcomes
    assert out["lab-2"]["status"] == "pending", out
    assert out["lab-3"]["status"] == "staged" and out["lab-3"]["bytes_sent"] == 0
    assert set(out["lab-3"]["peer_bytes"]) == {"lab-2", "lab-1"}  # type: ignore[arg-type]
    lab_netns.set_up(link, True)
    resumed = cli("rollouts", "resume", json.loads(result.out)["rollout"], "--json")
    assert resumed.code == 0, resumed.err
    lab2 = {o["device"]: o for o in json.loads(resumed.out)["outcomes"]}["lab-2"]
    assert lab2["status"] == "staged" and lab2["bytes_sent"] == 0
    assert "already on the device" in lab2["reason"]
    for name in ("lab-1", "lab-2", "lab-3"):
        blob = store_dir(home, name) / "blobs" / new
        assert sha256_file(blob) == new
