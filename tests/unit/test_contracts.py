"""Structural contracts: stubs are fresh; the agent imports nothing of the controller."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_generated_stubs_are_current() -> None:
    result = subprocess.run([sys.executable, "proto/generate.py", "--check"], cwd=ROOT,
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_agent_does_not_import_controller_side_libraries() -> None:
    code = (
        "import sys, agent.server, agent.cli, agent.core\n"
        "bad = [m for m in ('controller', 'typer', 'textual', 'sqlmodel', 'paramiko', 'rich')"
        " if m in sys.modules]\n"
        "print(','.join(bad))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                            text=True, check=True)
    assert result.stdout.strip() == ""


def test_core_imports_no_io_library() -> None:
    code = (
        "import sys, controller.core.select, controller.core.cost, controller.core.catalog,"
        " controller.core.profiles, controller.core.rollout, controller.core.gates,"
        " controller.core.sketch, controller.core.telemetry, controller.core.alerts,"
        " controller.core.rollups, controller.core.telemetry_records\n"
        "bad = [m for m in ('grpc', 'paramiko', 'sqlmodel', 'typer', 'textual', 'sqlalchemy')"
        " if m in sys.modules]\n"
        "print(','.join(bad))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                            text=True, check=True)
    assert result.stdout.strip() == ""


def test_the_inference_listener_denies_every_rpc_but_inference_and_reads() -> None:
    """A new management RPC must be denied explicitly on the certificate-free listener."""
    from agent.rpc import agent_pb2 as pb
    from agent.service import AgentServicer, InferenceOnlyServicer

    served = {"Generate", "GetProfile", "ListModels", "GetTelemetry", "GetVersion"}
    rpcs = set(pb.DESCRIPTOR.services_by_name["AgentService"].methods_by_name)
    denied = {name for name in rpcs
              if getattr(InferenceOnlyServicer, name) is not getattr(AgentServicer, name)}
    assert denied == rpcs - served
