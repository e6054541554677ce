"""The controller's one exception tree. The CLI boundary prints ``error:`` and ``hint:`` lines.

    FleetError (exit 1)
    ├── UsageError (exit 2)            bad input from the user
    │   ├── UnknownModel
    │   ├── UnknownGroup
    │   ├── UnknownDevice
    │   ├── EmptyGroup
    │   └── InvalidData                a malformed profile / catalog file, names file and field
    ├── ArtifactError                  a model file missing, not fetched, or corrupt
    ├── DeviceError                    one device could not be reached or refused
    │   ├── Unreachable (exit 4)
    │   ├── HostKeyUnknown
    │   ├── HostKeyMismatch
    │   ├── TransferInterrupted        the link dropped mid-upload (resumable)
    │   ├── UploadRefused              the device refused a write (disk full, permission...)
    │   ├── AgentRefused               the agent answered with an error status
    │   └── DevicesHeld                another rollout holds the devices (its id named)
    ├── LabError                       the local lab could not start or stop
    ├── SchemaError                    the database's schema is newer than this code, or broken
    ├── PkiError                       a key missing, locked by a passphrase, or inconsistent
    ├── DeployFailed                   a fleet operation finished with failed devices
    └── DevicesUnreachable (exit 4)    nothing failed, but devices could not be reached

Exit codes (docs/cli.md): 0 all well, 1 a device or step failed, 2 bad input, 4 devices were
unreachable (and nothing failed), as Ansible uses 4 for unreachable hosts; 70 a bug (crash
report written), 130 interrupted.
"""

from __future__ import annotations

from agent.contract import ErrorKind


class FleetError(Exception):
    exit_code = 1

    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.detail = message  # a DeviceError's says it without the device's name


class UsageError(FleetError):
    exit_code = 2


class UnknownModel(UsageError):
    pass


class UnknownGroup(UsageError):
    pass


class UnknownDevice(UsageError):
    pass


class EmptyGroup(UsageError):
    pass


class InvalidData(UsageError):
    pass


class ArtifactError(FleetError):
    pass


class DeviceError(FleetError):
    """``detail`` is the message without the device's name, for places (an outcome row, a
    summary line) that name the device already."""

    def __init__(self, message: str, hint: str = "", detail: str = "") -> None:
        super().__init__(message, hint)
        self.detail = detail or message


class Unreachable(DeviceError):
    exit_code = 4  # EXIT_UNREACHABLE: the device, not the request, is the problem; retry later


class HostKeyUnknown(DeviceError):
    pass


class HostKeyMismatch(DeviceError):
    pass


class TransferInterrupted(Unreachable):
    def __init__(self, message: str, hint: str = "", sent: int = 0) -> None:
        super().__init__(message, hint)
        self.sent = sent  # bytes the device acknowledged before the interruption


class UploadRefused(DeviceError):
    """The device answered a write with an error: ``cause`` is disk-full, permission,
    quota-or-io or refused. Not retried: the same write would fail again."""

    def __init__(self, message: str, hint: str = "", cause: str = "", sent: int = 0) -> None:
        super().__init__(message, hint)
        self.cause = cause
        self.sent = sent


class AgentRefused(DeviceError):
    def __init__(self, message: str, hint: str = "", code: str = "",
                 kind: ErrorKind = ErrorKind.UNSPECIFIED, detail: str = "") -> None:
        super().__init__(message, hint, detail)
        self.code = code  # the gRPC status name
        self.kind = kind  # why, as the agent said (agent.contract.ErrorKind)


class DevicesHeld(DeviceError):
    pass


class LabError(FleetError):
    pass


class SchemaError(FleetError):
    pass


class PkiError(FleetError):
    pass


class DeployFailed(FleetError):
    pass


EXIT_UNREACHABLE = 4


class DevicesUnreachable(FleetError):
    """Raised after a fleet operation printed its result, when some devices could not be
    reached and no device failed: scripts and cron jobs retry later on exit 4."""

    exit_code = EXIT_UNREACHABLE
