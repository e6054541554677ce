"""OpenAI-shaped errors: ``{"error": {"message", "type", "param", "code"}}`` with a status.

Agent errors map through one table (the HTTP twin of ``agent.service.STATUS_BY_ERROR``):

    ContextLengthExceeded  400 invalid_request_error  context_length_exceeded
    InvalidRequest         400 invalid_request_error
    NotFound               404 invalid_request_error  model_not_found
    NoActiveModel          503 server_error           model_not_loaded
    WorkerFailed           503 server_error           runtime_unavailable
    GenerationFailed       500 server_error           runtime_error
    anything else          500 server_error           internal_error
"""

from __future__ import annotations

from typing import Any

from agent.errors import (
    AgentError,
    ContextLengthExceeded,
    GenerationFailed,
    InvalidRequest,
    NoActiveModel,
    NotFound,
    WorkerFailed,
)

INVALID = "invalid_request_error"
SERVER = "server_error"

HTTP_BY_ERROR: dict[type[AgentError], tuple[int, str, str | None]] = {
    ContextLengthExceeded: (400, INVALID, "context_length_exceeded"),
    InvalidRequest: (400, INVALID, None),
    NotFound: (404, INVALID, "model_not_found"),
    NoActiveModel: (503, SERVER, "model_not_loaded"),
    WorkerFailed: (503, SERVER, "runtime_unavailable"),
    GenerationFailed: (500, SERVER, "runtime_error"),
}


class ApiError(Exception):
    """An error answered to the client; ``param`` names the request field at fault."""

    def __init__(self, status: int, message: str, type_: str = INVALID,
                 code: str | None = None, param: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type_
        self.code = code
        self.param = param

    def body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.type, "param": self.param,
                          "code": self.code}}

    @classmethod
    def from_agent_error(cls, exc: AgentError) -> ApiError:
        status, type_, code = next(
            (HTTP_BY_ERROR[k] for k in type(exc).__mro__ if k in HTTP_BY_ERROR),
            (500, SERVER, "internal_error"))
        return cls(status, str(exc), type_, code)


def bad_param(param: str, message: str) -> ApiError:
    return ApiError(400, message, INVALID, code="invalid_value", param=param)
