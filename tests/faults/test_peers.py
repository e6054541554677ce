"""Devices of one site on a real LAN (namespaces on one bridge behind one uplink,
`fleet lab up --netns --site-lan`): a device that cannot reach its peers (iptables in its
namespace drops the LAN, not the uplink) gets its copy from the controller, and the devices
planned to read from it read from the next one up. Every device ends with the verified model
and the invariants of this suite hold."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path

from controller import lab_netns
from tests.conftest import Cli, Result
from tests.faults.conftest import check_invariants, deploy, lab_device, variant_sha


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
