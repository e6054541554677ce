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


def test_the_inference_listener_serves_an_allow_list_of_rpcs() -> None:
    """Every RPC of the descriptor is denied on the certificate-free listener unless it is in
    the allow-list, so a management RPC added later is denied there by default (the wire
    test, tests/security/test_listeners.py, calls each one)."""
    from agent.rpc import agent_pb2 as pb
    from agent.service import INFERENCE_RPCS, AgentServicer, InferenceOnlyServicer

    assert {"Generate", "GetProfile", "ListModels", "GetTelemetry", "GetVersion"} == \
        INFERENCE_RPCS
    servicer = InferenceOnlyServicer(core=None)  # type: ignore[arg-type]
    rpcs = set(pb.DESCRIPTOR.services_by_name["AgentService"].methods_by_name)
    served = {name for name in rpcs
              if getattr(getattr(servicer, name), "__self__", None).__class__ is AgentServicer}
    assert served == INFERENCE_RPCS


def test_error_kinds_and_revert_causes_mirror_the_proto_enums() -> None:
    from agent.contract import ErrorKind, RevertCause
    from agent.rpc import agent_pb2 as pb

    for ours, enum_name, prefix in ((ErrorKind, "ErrorKind", "ERROR_KIND_"),
                                    (RevertCause, "RevertCause", "REVERT_CAUSE_")):
        wire = {v.name.removeprefix(prefix): v.number
                for v in pb.DESCRIPTOR.enum_types_by_name[enum_name].values}
        assert {k.name: k.value for k in ours} == wire
