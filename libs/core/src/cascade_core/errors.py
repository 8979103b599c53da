"""Domain errors shared by every service. The platform's gRPC interceptor maps each to a status code.

Raise these for problems the *caller* can fix (bad input, unknown ids) or for dependency outages.
Programmer errors (bugs) must stay ordinary exceptions: they map to INTERNAL and are never
swallowed by fallbacks.
"""

from __future__ import annotations


class CascadeError(Exception):
    """Base class of errors with a caller-facing message."""

    grpc_code_name = "UNKNOWN"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidArgumentError(CascadeError):
    """The request is malformed; ``field`` names what to fix."""

    grpc_code_name = "INVALID_ARGUMENT"

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


class NotFoundError(CascadeError):
    grpc_code_name = "NOT_FOUND"


class UnavailableError(CascadeError):
    """A dependency (store, model server, downstream service) is down or not warm yet."""

    grpc_code_name = "UNAVAILABLE"


class CircuitOpenError(UnavailableError):
    """A circuit breaker failed the call fast: the dependency failed repeatedly and is cooling down.

    An :class:`UnavailableError`, so fail-open stages serve their fallback at once.
    """


class ResourceExhaustedError(CascadeError):
    grpc_code_name = "RESOURCE_EXHAUSTED"

    def __init__(self, message: str, retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class UnauthenticatedError(CascadeError):
    grpc_code_name = "UNAUTHENTICATED"


class FailedPreconditionError(CascadeError):
    grpc_code_name = "FAILED_PRECONDITION"
