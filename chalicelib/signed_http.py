"""AWS calls without a boto3 client: a request signed with botocore's own SigV4 signer and sent
with the standard library's http.client.

For the few calls Kefu makes whose client would cost more than the call (chalicelib/ssm.py: a
client loads the SSM service model, ~70 ms of a cold start; chalicelib/management_api.py: a boto3
post_to_connection costs 0.62 ms of CPU against 0.17 ms here). HTTPS verifies the certificate and
host name against the runtime's CA store (``ssl.create_default_context``, as http.client does).
"""
from __future__ import annotations

import http.client
import threading
from typing import Any, Dict, Optional, Tuple
from urllib.parse import urlsplit

# What a connection can fail with before an answer arrives (a kept-alive one may have been closed).
TRANSPORT_ERRORS = (OSError, http.client.HTTPException)


class Endpoint:
    """One endpoint, e.g. ``https://ssm.us-east-1.amazonaws.com``; ``keep_alive`` keeps one
    connection per thread for the next call."""

    def __init__(self, url: str, service: str, region: str, timeout: float = 5, keep_alive: bool = False) -> None:
        parts = urlsplit(url)
        self.scheme, self.host, self.port = parts.scheme, parts.hostname or "", parts.port
        self.origin = f"{parts.scheme}://{parts.netloc}"
        self.base_path = parts.path.rstrip("/")
        self.service, self.region, self.timeout, self.keep_alive = service, region, timeout, keep_alive
        self._local = threading.local()
        self._credentials: Any = None

    def call(self, method: str, path: str, body: bytes = b"", headers: Optional[Dict[str, str]] = None
             ) -> Tuple[int, bytes]:
        """(status, body) of ``method`` on the endpoint's path + ``path`` (already percent-encoded,
        as botocore's serializers encode it). Raises TRANSPORT_ERRORS when no answer came."""
        from botocore.auth import SigV4Auth
        from botocore.awsrequest import AWSRequest

        full_path = self.base_path + path
        request = AWSRequest(method, self.origin + full_path, data=body, headers=dict(headers or {}))
        SigV4Auth(self._signing_credentials(), self.service, self.region).add_auth(request)
        connection = self._connection()
        try:
            connection.request(method, full_path, body=body, headers=dict(request.headers.items()))
            response = connection.getresponse()
            answer = (response.status, response.read())
        except TRANSPORT_ERRORS:
            self._drop(connection)
            raise
        if not self.keep_alive or response.will_close:
            self._drop(connection)
        return answer

    def _connection(self) -> http.client.HTTPConnection:
        connection = getattr(self._local, "connection", None)
        if connection is None:
            kind = http.client.HTTPSConnection if self.scheme == "https" else http.client.HTTPConnection
            connection = kind(self.host, self.port, timeout=self.timeout)
            self._local.connection = connection
        return connection

    def _drop(self, connection: http.client.HTTPConnection) -> None:
        connection.close()
        self._local.connection = None

    def _signing_credentials(self) -> Any:
        if self._credentials is None:
            self._credentials = credentials()
        return self._credentials


class NoCredentials(RuntimeError):
    pass


def credentials() -> Any:  # -> botocore.credentials.Credentials
    """The function's role credentials: environment variables in Lambda (no lookup chain); elsewhere
    botocore's whole chain (profiles, SSO, instance roles)."""
    from botocore.credentials import EnvProvider

    found = EnvProvider().load()
    if found is None:
        import botocore.session

        found = botocore.session.get_session().get_credentials()
    if found is None:
        raise NoCredentials("no AWS credentials to sign requests with")
    return found
