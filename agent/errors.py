"""Agent error tree. Each maps to exactly one gRPC status code in ``agent.service`` (and one
HTTP status in ``agent.openai_http.errors``).

    AgentError
    ├── InvalidRequest        bad name, bad sha256, bad parameters     -> INVALID_ARGUMENT
    │   └── ContextLengthExceeded  the prompt does not fit the context   -> INVALID_ARGUMENT
    ├── NotFound              blob or model not in the store            -> NOT_FOUND
    ├── ChecksumMismatch      staged bytes do not hash to their name    -> DATA_LOSS
    │   └── BlobCorrupt       a stored blob no longer does (quarantined) -> DATA_LOSS
    ├── InsufficientMemory    the load would not fit the budget         -> RESOURCE_EXHAUSTED
    ├── InsufficientDisk      the store cannot hold the blob            -> RESOURCE_EXHAUSTED
    ├── NotForThisMachine     the file cannot run here                  -> FAILED_PRECONDITION
    │   └── AdapterMismatch   a LoRA adapter for another base            -> FAILED_PRECONDITION
    ├── NoActiveModel         inference asked with nothing loaded       -> FAILED_PRECONDITION
    ├── ManifestRejected      unsigned, badly signed, mismatching,       -> PERMISSION_DENIED
    │   │                     expired or for another device
    │   └── ManifestStale     version at or below the high-water mark   -> PERMISSION_DENIED
    ├── GenerationFailed      the runtime raised during a generation    -> INTERNAL
    ├── WorkerFailed          the runtime worker crashed or refused     -> UNAVAILABLE
    └── NotOnTrial            commit/abort of a model not on trial      -> FAILED_PRECONDITION

Each class names its ``ErrorKind`` (agent.contract), which travels with the status.
"""

from __future__ import annotations

from agent.contract import ErrorKind


class AgentError(Exception):
    """Base of every error the agent reports to a client."""

    kind = ErrorKind.UNSPECIFIED


class InvalidRequest(AgentError):
    kind = ErrorKind.INVALID_REQUEST


class ContextLengthExceeded(InvalidRequest):
    pass


class NotFound(AgentError):
    kind = ErrorKind.NOT_FOUND


class ChecksumMismatch(AgentError):
    kind = ErrorKind.CHECKSUM_MISMATCH


class BlobCorrupt(ChecksumMismatch):
    """Bytes that were verified once no longer hash to their name: moved to quarantine, no
    longer held, to be sent again. Never the model's fault."""

    kind = ErrorKind.BLOB_CORRUPT


class InsufficientMemory(AgentError):
    kind = ErrorKind.INSUFFICIENT_MEMORY


class InsufficientDisk(AgentError):
    kind = ErrorKind.INSUFFICIENT_DISK


class NotForThisMachine(AgentError):
    kind = ErrorKind.NOT_FOR_THIS_MACHINE


class AdapterMismatch(NotForThisMachine):
    """A LoRA adapter whose header names another base architecture than the active model's
    (or that is no LoRA adapter at all)."""

    kind = ErrorKind.ADAPTER_MISMATCH


class NoActiveModel(AgentError):
    kind = ErrorKind.NO_ACTIVE_MODEL


class WorkerFailed(AgentError):
    kind = ErrorKind.WORKER_FAILED


class GenerationFailed(AgentError):
    kind = ErrorKind.GENERATION_FAILED


class ManifestRejected(AgentError):
    """``check`` names the check that failed: signed, signature, device, expiry, version, or
    the request field that differs from the signed one."""

    kind = ErrorKind.MANIFEST_REJECTED

    def __init__(self, message: str, check: str = "") -> None:
        super().__init__(message)
        self.check = check


class ManifestStale(ManifestRejected):
    """A genuine manifest this device has seen, or one older than it: a replay, or a
    controller whose counter went back (a database restored from a backup)."""

    kind = ErrorKind.MANIFEST_STALE


class NotOnTrial(AgentError):
    kind = ErrorKind.NOT_ON_TRIAL
