"""Pure pieces of the trust work: addresses, terminal-safe text, prompt limits, the agent's
constraints file, and the agent's trust store following files that change."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from agent.errors import InvalidRequest
from agent.limits import AgentLimits
from agent.trust_store import TrustError, TrustStore
from controller.adapters.constraints import DEVICE_BUILT, pinned
from controller.adapters.pki import FleetPki
from controller.core.display import terminal_safe
from controller.core.hosts import valid_address
from controller.errors import UsageError


@pytest.mark.parametrize(("value", "ok"), [
    ("10.0.0.5", True), ("fd00::5", True), ("kiosk-3.example.com", True), ("kiosk_3", True),
    ("kiosk.", True), ("$(reboot)", False), ("a;b", False), ("a b", False), ("", False),
    ("host\n", False), ("-rf", False), ("a" * 64, False), ("`id`", False),
])
def test_addresses(value: str, ok: bool) -> None:
    assert valid_address(value) is ok


@pytest.mark.parametrize(("text", "shown"), [
    ("plain [red]markup[/] stays", "plain [red]markup[/] stays"),
    ("title\x1b]0;pwned\x07 after", "title after"),
    ("csi \x1b[2J\x1b[31mred\x1b[0m", "csi red"),
    ("c1 \x9b31m csi", "c1  csi"),
    ("bell\x07 nul\x00 del\x7f", "bell nul del"),
    ("lines\nand\ttabs", "lines and tabs"),
])
def test_terminal_safe(text: str, shown: str) -> None:
    assert terminal_safe(text) == shown


def test_terminal_safe_keeps_newlines_when_asked() -> None:
    assert terminal_safe("a\n\x1b[2Kb\tc", keep_newlines=True) == "a\nb\tc"


def test_prompt_and_limit_checks() -> None:
    limits = AgentLimits(max_prompt_bytes=10).check()
    limits.check_prompt("0123456789")
    with pytest.raises(InvalidRequest, match="11 bytes"):
        limits.check_prompt("01234", "567890")
    with pytest.raises(InvalidRequest, match="12 bytes"):
        limits.check_prompt("éééééé")  # bytes, not characters
    with pytest.raises(ValueError, match="--max-concurrent-rpcs"):
        AgentLimits(max_concurrent_rpcs=0).check()


def test_constraints_pin_the_agents_dependencies_not_the_device_built_runtimes() -> None:
    agent = pinned(["agent"])
    assert {"grpcio", "protobuf", "cryptography", "starlette", "uvicorn"} <= set(agent)
    assert not DEVICE_BUILT & set(agent)
    assert "typer" not in agent and "paramiko" not in agent  # the controller's own
    import grpc

    assert agent["grpcio"] == grpc.__version__


def test_the_trust_store_follows_replaced_files(tmp_path: Path) -> None:
    pki = FleetPki(tmp_path / "pki").ensure()
    tls = tmp_path / "tls"
    tls.mkdir()
    for name, data in pki.agent_files("kiosk-1", "").items():
        (tls / name).write_bytes(data)
    store = TrustStore(tls)
    assert store.device_name == "kiosk-1" and store._fetch() is None  # nothing changed
    first = store.serial
    renewed = pki.issue("kiosk-1")
    time.sleep(0.01)
    (tls / "agent.crt").write_bytes(renewed.cert_pem)  # the certificate first: no match yet
    assert store._fetch() is None and store.serial == first
    (tls / "agent.key").write_bytes(renewed.key_pem)
    assert store._fetch() is not None and store.serial == renewed.serial
    pki.sign_crl([(first, pki_now())])
    (tls / "crl.pem").write_bytes(pki.crl_path.read_bytes())
    assert store.revoked(first) is not None and store.revoked(renewed.serial) is None
    other = FleetPki(tmp_path / "other").ensure()
    other.sign_crl([])
    (tls / "crl.pem").write_bytes(other.crl_path.read_bytes())  # not signed by our CA
    assert store.revoked(first) is not None  # ignored: the loaded list stays
    (tls / "signing.pub").write_bytes(b"")
    assert store.signing_keys()  # an emptied key file never unpins the key
    (tls / "signing.pub").unlink()
    with pytest.raises(TrustError, match="no manifest-signing key"):
        TrustStore(tls)


def pki_now() -> object:
    import datetime as dt

    return dt.datetime.now(dt.timezone.utc)


def test_usage_errors_are_one_line_with_a_hint() -> None:
    from controller.core.hosts import check_host

    with pytest.raises(UsageError) as info:
        check_host("$(reboot)")
    assert "\n" not in info.value.message and info.value.hint
