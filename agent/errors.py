"""Agent error tree. Each maps to exactly one gRPC status code in ``agent.service``.

    AgentError
    ├── InvalidRequest        bad name, bad sha256, bad parameters     -> INVALID_ARGUMENT
    ├── NotFound              blob or model not in the store            -> NOT_FOUND
    ├── ChecksumMismatch      staged bytes do not hash to their name    -> DATA_LOSS
    │   └── BlobCorrupt       a stored blob no longer does (quarantined) -> DATA_LOSS
    ├── InsufficientMemory    the load would not fit the budget         -> RESOURCE_EXHAUSTED
    ├── InsufficientDisk      the store cannot hold the blob            -> RESOURCE_EXHAUSTED
    ├── NotForThisMachine     the file cannot run here                  -> FAILED_PRECONDITION
    ├── NoActiveModel         inference asked with nothing loaded       -> FAILED_PRECONDITION
    ├── ManifestRejected      unsigned, badly signed or mismatching      -> PERMISSION_DENIED
    ├── GenerationFailed      the runtime raised during a generation    -> INTERNAL
    └── WorkerFailed          the runtime worker crashed or refused     -> UNAVAILABLE
"""

from __future__ import annotations


class AgentError(Exception):
    """Base of every error the agent reports to a client."""


class InvalidRequest(AgentError):
    pass


class NotFound(AgentError):
    pass


class ChecksumMismatch(AgentError):
    pass


class BlobCorrupt(ChecksumMismatch):
    """Bytes that were verified once no longer hash to their name: moved to quarantine, no
    longer held, to be sent again. Never the model's fault."""


class InsufficientMemory(AgentError):
    pass


class InsufficientDisk(AgentError):
    pass


class NotForThisMachine(AgentError):
    pass


class NoActiveModel(AgentError):
    pass


class WorkerFailed(AgentError):
    pass


class GenerationFailed(AgentError):
    pass


class ManifestRejected(AgentError):
    pass
