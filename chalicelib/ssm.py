"""One SSM parameter, fetched with a single signed HTTPS call and no boto3 client.

A boto3 (or botocore) SSM client loads the whole SSM service model: ~70 ms of a cold start
(bench/cold_start.py), more than the rest of the secret fetch together. GetParameter is one
JSON POST, so it is signed with botocore's own SigV4 signer and sent with the standard library's
http.client (botocore's urllib3 session cost ~1.5 ms more: its pool, and an IDNA codec import for
the host name); the credentials are the function's (environment variables). HTTPS verifies the
certificate and host name against the runtime's CA store (``ssl.create_default_context``).
"""
from __future__ import annotations

import json
from typing import Optional

from chalicelib.config import settings


class ParameterError(RuntimeError):
    """SSM refused or failed (not "no such parameter", which is None)."""


def get_parameter(name: str) -> Optional[str]:
    """The decrypted value of the parameter ``name``, or None if it does not exist."""
    import http.client
    from urllib.parse import urlsplit

    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest

    cfg = settings()
    endpoint = urlsplit(cfg.ssm_endpoint)
    body = json.dumps({"Name": name, "WithDecryption": True})
    request = AWSRequest("POST", f"{endpoint.scheme}://{endpoint.netloc}/", data=body, headers={
        "Content-Type": "application/x-amz-json-1.1", "X-Amz-Target": "AmazonSSM.GetParameter"})
    SigV4Auth(_credentials(), "ssm", cfg.region).add_auth(request)
    connection_class = http.client.HTTPSConnection if endpoint.scheme == "https" else http.client.HTTPConnection
    connection = connection_class(endpoint.hostname, endpoint.port, timeout=5)
    try:
        connection.request("POST", "/", body=body, headers=dict(request.headers.items()))
        response = connection.getresponse()
        status, content = response.status, response.read()
    except (OSError, http.client.HTTPException) as error:
        raise ParameterError(f"SSM GetParameter {name}: {error}") from error
    finally:
        connection.close()
    answer = json.loads(content or b"{}")
    if status == 200:
        return answer["Parameter"]["Value"]
    error = str(answer.get("__type", "")).rsplit("#", 1)[-1]
    if error == "ParameterNotFound":
        return None
    raise ParameterError(f"SSM GetParameter {name}: HTTP {status} {error or content[:200]!r}")


def _credentials():  # -> botocore.credentials.Credentials
    """The function's role credentials: environment variables in Lambda (no lookup chain); elsewhere
    botocore's whole chain (profiles, SSO, instance roles)."""
    from botocore.credentials import EnvProvider

    found = EnvProvider().load()
    if found is None:
        import botocore.session

        found = botocore.session.get_session().get_credentials()
    if found is None:
        raise ParameterError("no AWS credentials to read SSM parameters with")
    return found
