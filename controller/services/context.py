"""The one object that wires adapters together for a command run.

Adapters are made on first use, and their modules imported then: a command that only reads
the database never loads paramiko, gRPC or the PKI (see bench/cli_startup.py).
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING

from controller import settings
from controller.core.models import Profile
from controller.core.profiles import llama_offload, overlay_probe

if TYPE_CHECKING:
    from agent.rpc import agent_pb2 as pb
    from controller.adapters.agent_client import GrpcAgentClient
    from controller.adapters.inventory import SqlInventory
    from controller.adapters.pki import FleetPki
    from controller.adapters.ssh import ParamikoTransfer, SshTarget
    from controller.adapters.tables import Device
    from controller.artifacts import ArtifactCache


class Fleet:
    def __init__(self, inventory: SqlInventory) -> None:
        self.inventory = inventory

    @classmethod
    def open(cls, db_url: str | None = None) -> Fleet:
        from controller.adapters.inventory import SqlInventory

        return cls(SqlInventory(settings.db_url(db_url)))

    @functools.cached_property
    def artifacts(self) -> ArtifactCache:
        from controller.artifacts import ArtifactCache

        return ArtifactCache(self.inventory)

    @functools.cached_property
    def transfer(self) -> ParamikoTransfer:
        from controller.adapters.ssh import ParamikoTransfer

        return ParamikoTransfer(settings.known_hosts_path(),
                                ssh_config=settings.ssh_config_path(),
                                stall_timeout_s=settings.ssh_stall_timeout_s())

    @functools.cached_property
    def profiles(self) -> dict[str, Profile]:
        from controller.adapters.data_files import load_profiles

        return load_profiles()

    @functools.cached_property
    def pki(self) -> FleetPki:
        """Created on first use, then kept: one set of keys read per command run."""
        from controller.adapters.pki import FleetPki

        return FleetPki(settings.pki_dir(), settings.ca_key_path(),
                        settings.signing_key_path(), settings.pki_passphrase).ensure()

    def client(self, device: Device, timeout_s: float = 30.0) -> GrpcAgentClient:
        """A gRPC client for the device's agent (mutual TLS once enrolled); through an SSH
        tunnel when the device is behind a bastion, so such a device needs no extra flags."""
        from controller.adapters.agent_client import GrpcAgentClient
        from controller.adapters.ssh import SshTarget, parse_jump
        from controller.adapters.ssh_tunnel import SshTunnel

        resolved = self.transfer.resolve(self.ssh_target(device))
        tls = self.pki.client_credentials() if device.tls else None
        if not resolved.proxy_jump:
            return GrpcAgentClient(device.name, device.host, device.agent_port, timeout_s,
                                   tls=tls)
        user, host, port = parse_jump(resolved.proxy_jump.split(",")[0])
        rest = resolved.proxy_jump.partition(",")[2]
        bastion = self.transfer.connect(SshTarget(f"{device.name} (jump {host})", host,
                                                  port or 22, user, "", rest or "none"))
        tunnel = SshTunnel(bastion, (resolved.hostname, device.agent_port))

        def close() -> None:
            tunnel.close()
            bastion.close()

        return GrpcAgentClient(device.name, "127.0.0.1", tunnel.port, timeout_s, on_close=close,
                               tls=tls)

    def ssh_target(self, device: Device) -> SshTarget:
        from controller.adapters.ssh import SshTarget

        return SshTarget(device.name, device.host, device.ssh_port, device.user, device.key_path,
                         device.proxy_jump)

    def declared_profile(self, device: Device) -> Profile | None:
        return self.profiles.get(device.profile) if device.profile else None


def profile_from_probe(fleet: Fleet, device: Device, probed: pb.HardwareProfile) -> Profile:
    base = fleet.declared_profile(device)
    if base is None and probed.profile:
        base = fleet.profiles.get(probed.profile)
    return overlay_probe(
        base,
        device.name,
        arch=probed.arch,
        cores=probed.cores,
        isa=tuple(probed.cpu_flags),
        ram_bytes=probed.ram_total_bytes,
        disk_free_bytes=probed.disk_free_bytes,
        bandwidth_gbps=probed.mem_bandwidth_gbps,
        title=probed.device_model,
        runtimes=tuple(r.split()[0] for r in probed.runtimes),
        llama_offload=llama_offload(tuple(probed.runtimes)),
        execution_providers=tuple(probed.execution_providers),
        decode_efficiency=device.decode_efficiency or 0.0,
        calibration_backend=device.decode_efficiency_backend,
        bandwidth_method=probed.bandwidth_method,
    )


def stored_profile(fleet: Fleet, device: Device) -> Profile | None:
    """The device's profile from its last stored probe (what its agent said at the last deploy),
    else its declared profile: what a plan, an estimate or ``fleet device show`` uses when the
    agent is not asked now."""
    if device.probed_json:
        import json

        from google.protobuf.json_format import ParseDict

        from agent.rpc import agent_pb2

        try:
            probed = ParseDict(json.loads(device.probed_json), agent_pb2.HardwareProfile(),
                               ignore_unknown_fields=True)
            return profile_from_probe(fleet, device, probed)
        except (ValueError, TypeError):
            pass
    return fleet.declared_profile(device)
