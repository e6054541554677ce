"""Where peers reach a device: its address, or its ``peer_address`` label, only ever as a
host and port (a label is free text; gRPC would take ``unix:...`` as a socket path)."""

from __future__ import annotations

import pytest

from controller.services.peer_sites import valid_target, with_port


@pytest.mark.parametrize(("address", "ok"), [
    ("10.0.0.1", True), ("kiosk-1.lan:5000", True), ("[::1]:9", True), ("fe80::1", True),
    ("unix:/tmp/agent.sock", False), ("unix:1", False), ("dns:///evil.example", False),
    ("a b", False), ("10.0.0.1:0", False), ("10.0.0.1:99999", False), ("$(reboot)", False),
])
def test_only_a_host_and_port_is_a_peer_target(address: str, ok: bool) -> None:
    assert valid_target(with_port(address, 50051)) is ok
