"""Agent error tree. Each maps to exactly one gRPC status code in ``agent.service`` (and one
HTTP status in ``agent.openai_http.errors``).

    AgentError
    ├── InvalidRequest        bad name, bad sha256, bad parameters     -> INVALID_ARGUMENT
    │   └── ContextLengthExceeded  the prompt does not fit the context   -> INVALID_ARGUMENT
    ├── NotFound              blob or model not in the store            -> NOT_FOUND
    ├── ChecksumMismatch      staged bytes do not hash to their name    -> DATA_LOSS
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


class ContextLengthExceeded(InvalidRequest):
    pass


class NotFound(AgentError):
    pass


class ChecksumMismatch(AgentError):
    pass


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
