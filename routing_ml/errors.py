"""The error codes of the runbooks and the one exception type that carries them to every entry point."""

from __future__ import annotations

from enum import IntEnum
from typing import Any


class ErrorCode(IntEnum):
    DATABASE_UNAVAILABLE = 1001
    MODEL_NOT_FOUND = 1002
    QUEUE_FULL = 1003
    TRAINING_FAILED = 1004
    MODEL_LOAD_FAILED = 1005
    DISK_SPACE_LOW = 2001
    MEMORY_HIGH = 2002
    MAE_CRITICAL = 3001
    PROCESS_MATCH_CRITICAL = 3002


class RoutingMLError(Exception):
    """A failure the user can act on. API views turn it into `{"error": {code, message, details}}`."""

    code: int = 0
    http_status: int = 400

    def __init__(self, message: str, *, code: int | None = None, http_status: int | None = None, details: Any = None):
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = int(code)
        if http_status is not None:
            self.http_status = http_status
        self.details = details

    def as_dict(self) -> dict:
        return {"code": self.code, "message": self.message, "details": self.details}


class ModelNotFound(RoutingMLError):
    code = ErrorCode.MODEL_NOT_FOUND
    http_status = 404


class NoActiveModel(RoutingMLError):
    code = ErrorCode.MODEL_NOT_FOUND
    http_status = 503


class ArtifactError(RoutingMLError):
    """A version's files are missing or fail their checksum: it cannot be served."""

    code = ErrorCode.MODEL_NOT_FOUND
    http_status = 409


class QueueFull(RoutingMLError):
    code = ErrorCode.QUEUE_FULL
    http_status = 429


class InvalidTransition(RoutingMLError):
    """A state change that the record's current state does not allow (e.g. cancelling a finished job)."""

    code = 4090
    http_status = 409
