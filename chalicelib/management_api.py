"""The two API Gateway Management API calls Kefu makes, post_to_connection and delete_connection,
without a boto3 client.

Every message is posted to each of its recipients' connections (and acked to its sender's), so
this is the most frequent AWS call Kefu makes. boto3's client spends 0.62 ms of CPU on a post
(its event hooks, endpoint rules, serializer, user agent and parser); signed with botocore's SigV4
and sent on a kept-alive connection (chalicelib/signed_http.py) it costs 0.17 ms, measured the
same way. The calls are a POST and a DELETE on ``{endpoint}/@connections/{id}``; the errors are
told apart by status, as API Gateway documents them (410 GoneException, 413
PayloadTooLargeException). Same interface as the boto3 client, so tests may hand in a stand-in.
"""
from __future__ import annotations

import json
import time
from urllib.parse import quote

from chalicelib import signed_http

# Retried once, after a moment (boto3's client was configured with two attempts as well).
_RETRIED = {429, 500, 502, 503, 504}


class ManagementApiError(Exception):
    def __init__(self, status: int, error_type: str, message: str) -> None:
        super().__init__(f"HTTP {status} {error_type}: {message}")
        self.status, self.error_type = status, error_type


class GoneException(ManagementApiError):
    """410: the connection no longer exists."""


class PayloadTooLargeException(ManagementApiError):
    """413: over API Gateway's 128 KB per post."""


class ManagementApi:
    class exceptions:  # where boto3's client keeps them
        GoneException = GoneException
        PayloadTooLargeException = PayloadTooLargeException

    def __init__(self, endpoint: str, region: str, timeout: float = 5) -> None:
        """``endpoint``: https://{api}.execute-api.{region}.amazonaws.com/{stage}."""
        self._endpoint = signed_http.Endpoint(endpoint, "execute-api", region, timeout=timeout, keep_alive=True)

    def post_to_connection(self, ConnectionId: str, Data: bytes) -> None:  # noqa: N803 (boto3's names)
        self._call("POST", ConnectionId, Data)

    def delete_connection(self, ConnectionId: str) -> None:  # noqa: N803
        self._call("DELETE", ConnectionId, b"")

    def _call(self, method: str, connection_id: str, body: bytes) -> None:
        # Encoded as botocore encodes a URI label (an id's "=" is %3D); SigV4 encodes it again.
        path = "/@connections/" + quote(connection_id, safe="-._~")
        for attempt in (1, 2):
            try:
                status, content = self._endpoint.call(method, path, body)
            except signed_http.TRANSPORT_ERRORS:
                if attempt == 2:
                    raise
                continue  # a kept-alive connection the other end had closed: once more, anew
            if status < 300:
                return
            if status in _RETRIED and attempt == 1:
                time.sleep(0.05)
                continue
            raise _error(status, content)


def _error(status: int, content: bytes) -> ManagementApiError:
    try:
        message = str(json.loads(content or b"{}").get("message", ""))
    except ValueError:
        message = content[:200].decode(errors="replace")
    if status == 410:
        return GoneException(status, "GoneException", message)
    if status == 413:
        return PayloadTooLargeException(status, "PayloadTooLargeException", message)
    return ManagementApiError(status, {400: "BadRequestException", 403: "ForbiddenException",
                                       429: "LimitExceededException"}.get(status, "Error"), message)
