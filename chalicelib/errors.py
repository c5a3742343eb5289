"""The one error type every Kefu code path raises for bad input or refused access.

A ``KefuError`` becomes an ``error`` frame on the WebSocket and an HTTP 4xx JSON body on REST,
both carrying the same stable machine-readable ``code``.
"""
from __future__ import annotations

from typing import Optional


class KefuError(Exception):
    def __init__(self, code: str, message: str, status: int = 400, retry_after: Optional[int] = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status
        self.retry_after = retry_after  # seconds, for a 429's Retry-After

    def to_dict(self) -> dict:
        return {"code": self.code, "message": self.message}


def bad_request(code: str, message: str) -> KefuError:
    return KefuError(code, message, 400)


def unauthorized(code: str, message: str) -> KefuError:
    return KefuError(code, message, 401)


def forbidden(code: str, message: str) -> KefuError:
    return KefuError(code, message, 403)


def not_found(code: str, message: str) -> KefuError:
    return KefuError(code, message, 404)


def conflict(code: str, message: str) -> KefuError:
    return KefuError(code, message, 409)


def too_large(code: str, message: str) -> KefuError:
    return KefuError(code, message, 413)


def rate_limited(code: str, message: str) -> KefuError:
    return KefuError(code, message, 429)


def connection_unknown() -> KefuError:
    """The server does not know this socket: the client reconnects (docs/protocol.md)."""
    return KefuError("connection_unknown", "this connection is not registered; reconnect", 410)


def is_condition_failure(exc: Exception) -> bool:
    """A pynamodb write error caused by its ConditionExpression (not a fault)."""
    return getattr(exc, "cause_response_code", None) == "ConditionalCheckFailedException"
