"""Shared fixtures: an isolated FLEET_HOME per test, the tiny ladder built once per session,
the `fleet` CLI run in-process, and a real lab (sshd + agents) torn down after each test."""

from __future__ import annotations

import fcntl
import glob
import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from controller.cli.app import main

# The agents' background scrub re-hashes stores at a bounded rate; off in tests unless a test
# asks for it (tests/unit/test_store_integrity.py runs it directly).
os.environ.setdefault("FLEET_AGENT_SCRUB_MBPS", "0")


@dataclass
class Result:
    code: int
    out: str
    err: str


Cli = Callable[..., Result]


@pytest.fixture(scope="session")
def model_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny-llama ladder (gguf + llama.cpp) and the tiny-mlp ONNX pair (onnx.helper +
    onnxruntime.quantization), built once per test session."""
    home = tmp_path_factory.mktemp("ladder-home")
    old = os.environ.get("FLEET_HOME")
    os.environ["FLEET_HOME"] = str(home)
    try:
        from controller.services import models
        from controller.services.context import Fleet

        fleet = Fleet.open()
        models.build(fleet, "tiny-llama")
        models.build(fleet, "tiny-mlp")
    finally:
        if old is None:
            os.environ.pop("FLEET_HOME", None)
        else:
            os.environ["FLEET_HOME"] = old
    return home / "models"


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, model_cache: Path) -> Path:
    """A fresh FLEET_HOME (empty database, own known_hosts) with the ladder hard-linked in."""
    h = tmp_path / "home"
    h.mkdir()
    monkeypatch.setenv("FLEET_HOME", str(h))
    monkeypatch.delenv("FLEET_DB_URL", raising=False)
    monkeypatch.delenv("FLEET_PROFILES_DIR", raising=False)
    shutil.copytree(model_cache, h / "models", copy_function=os.link,
                    ignore=shutil.ignore_patterns("*.log"))
    return h


@pytest.fixture
def cli(home: Path, capsys: pytest.CaptureFixture[str]) -> Cli:
    def run(*args: str) -> Result:
        capsys.readouterr()
        code = main(list(args))
        captured = capsys.readouterr()
        return Result(code, captured.out, captured.err)

    return run


@pytest.fixture
def lab(cli: Cli, home: Path) -> Iterator[Callable[..., Result]]:
    """Start a lab with `fleet lab up ...` inside the test; always `lab down` afterwards."""

    def up(*args: str) -> Result:
        result = cli("lab", "up", *args)
        assert result.code == 0, result.err
        return result

    yield up
    cli("lab", "down")


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _pg_bin(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    return candidates[-1] if candidates else None


@pytest.fixture
def pg_url() -> Iterator[str]:
    initdb, pg_ctl = _pg_bin("initdb"), _pg_bin("pg_ctl")
    if not initdb or not pg_ctl:
        pytest.skip("PostgreSQL is not installed")
    # not under pytest's 0700 tree: the server runs as another user when we are root
    root = Path(tempfile.mkdtemp(prefix="edgefleet-pg-"))
    data, sock = root / "data", root / "sock"
    sock.mkdir()
    as_user: list[str] = []
    if os.geteuid() == 0:  # initdb refuses root: run the server as the postgres user
        as_user = ["runuser", "-u", "postgres", "--"]
        shutil.chown(root, "postgres")
        shutil.chown(sock, "postgres")
        root.chmod(0o755)
    subprocess.run([*as_user, initdb, "-D", str(data), "-U", "fleet", "--auth=trust", "-E",
                    "UTF8"], check=True, capture_output=True)
    port = _free_port()  # names the socket and the shared memory key: two runs never clash
    subprocess.run([*as_user, pg_ctl, "-D", str(data), "-l", str(root / "log"), "-w", "-o",
                    f"-c listen_addresses='' -c unix_socket_directories={sock} -p {port}",
                    "start"], check=True, capture_output=True)
    try:
        yield f"postgresql+psycopg://fleet@/postgres?host={sock}&port={port}"
    finally:
        subprocess.run([*as_user, pg_ctl, "-D", str(data), "-m", "immediate", "stop"],
                       capture_output=True)
        shutil.rmtree(root, ignore_errors=True)


NETNS_LOCK = "/tmp/edgefleet-netns.lock"


@pytest.fixture
def netns_lock() -> Iterator[None]:
    """Serialise with every other run on this machine that uses network namespaces, iptables
    or the lab's 198.18.x.x addresses (`flock /tmp/edgefleet-netns.lock ...` takes the same
    lock). Request it before `lab` so the lab is down before the lock is released."""
    with open(NETNS_LOCK, "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)
