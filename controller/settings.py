"""Where the controller keeps its state. One function per path; environment overrides.

- ``FLEET_HOME``: everything below (default ``$XDG_DATA_HOME/edgefleet`` or
  ``~/.local/share/edgefleet``).
- ``FLEET_DB_URL``: any SQLAlchemy URL (default SQLite at ``$FLEET_HOME/fleet.db``).
- ``FLEET_PROFILES_DIR``: the user's own hardware profiles, overriding shipped ones by name.
- ``FLEET_CA_KEY``, ``FLEET_SIGNING_KEY``: where the fleet CA's key and the manifest-signing
  key live when not in ``$FLEET_HOME/pki`` (docs/security.md);
  ``FLEET_PKI_PASSPHRASE`` or ``FLEET_PKI_PASSPHRASE_FILE``: their passphrase.
"""

from __future__ import annotations

import os
from pathlib import Path


def fleet_home() -> Path:
    env = os.environ.get("FLEET_HOME")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local/share")
    return Path(xdg) / "edgefleet"


def db_url(override: str | None = None) -> str:
    if override:
        return override if "://" in override else f"sqlite:///{Path(override).resolve()}"
    env = os.environ.get("FLEET_DB_URL")
    if env:
        return env
    return f"sqlite:///{fleet_home() / 'fleet.db'}"


def known_hosts_path() -> Path:
    return fleet_home() / "known_hosts"


def models_dir() -> Path:
    return fleet_home() / "models"


def lab_dir() -> Path:
    return fleet_home() / "lab"


def user_catalog_dir() -> Path:
    return Path(os.environ.get("FLEET_CATALOG_DIR") or fleet_home() / "catalog")


def shipped_catalog_dir() -> Path:
    return Path(__file__).resolve().parent / "catalog"


def ssh_config_path() -> Path:
    """``FLEET_SSH_CONFIG`` or ``~/.ssh/config`` (HostName, User, Port, IdentityFile,
    ProxyJump are honoured)."""
    return Path(os.environ.get("FLEET_SSH_CONFIG") or Path.home() / ".ssh" / "config")


def ssh_stall_timeout_s() -> float:
    """``FLEET_SSH_STALL_TIMEOUT``: seconds without progress before an upload is interrupted
    and retried (default 30)."""
    return float(os.environ.get("FLEET_SSH_STALL_TIMEOUT") or 30.0)


def parallel_min_bytes() -> int:
    """``FLEET_PARALLEL_MIN_BYTES``: files of this size and more go over several SFTP channels
    (default 64 MiB; the tests lower it to exercise multi-channel uploads on small files)."""
    return int(os.environ.get("FLEET_PARALLEL_MIN_BYTES") or 64 * 1024 * 1024)


def pki_dir() -> Path:
    return fleet_home() / "pki"


def ca_key_path() -> Path | None:
    """``FLEET_CA_KEY``: the fleet CA's private key, when it lives apart."""
    env = os.environ.get("FLEET_CA_KEY")
    return Path(env).expanduser() if env else None


def signing_key_path() -> Path | None:
    """``FLEET_SIGNING_KEY``: the manifest-signing private key, when it lives apart."""
    env = os.environ.get("FLEET_SIGNING_KEY")
    return Path(env).expanduser() if env else None


def pki_passphrase() -> bytes | None:
    """``FLEET_PKI_PASSPHRASE``, or the first line of the file ``FLEET_PKI_PASSPHRASE_FILE``
    names: the passphrase of the CA and signing keys (None: they are not encrypted)."""
    env = os.environ.get("FLEET_PKI_PASSPHRASE")
    if env:
        return env.encode()
    path = os.environ.get("FLEET_PKI_PASSPHRASE_FILE")
    if path:
        lines = Path(path).expanduser().read_text().splitlines()
        return lines[0].encode() if lines and lines[0] else None
    return None


def manifest_ttl_s() -> float:
    """``FLEET_MANIFEST_TTL_S``: how long a signed load order stays valid after it is issued
    (default 600 s; the agent checks it on its own clock)."""
    return float(os.environ.get("FLEET_MANIFEST_TTL_S") or 600.0)
