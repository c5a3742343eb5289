"""One SSM parameter, fetched with a single signed HTTPS call and no boto3 client.

A boto3 (or botocore) SSM client loads the whole SSM service model: ~70 ms of a cold start
(bench/cold_start.py), more than the rest of the secret fetch together. GetParameter is one
JSON POST, so it is signed with botocore's own SigV4 signer and sent on botocore's HTTP session:
both ship with the Lambda runtime, and the credentials are the function's (environment variables).
"""
from __future__ import annotations

import json
from typing import Optional

from chalicelib.config import settings


class ParameterError(RuntimeError):
    """SSM refused or failed (not "no such parameter", which is None)."""


def get_parameter(name: str) -> Optional[str]:
    """The decrypted value of the parameter ``name``, or None if it does not exist."""
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.httpsession import URLLib3Session

    cfg = settings()
    body = json.dumps({"Name": name, "WithDecryption": True})
    request = AWSRequest("POST", cfg.ssm_endpoint.rstrip("/") + "/", data=body, headers={
        "Content-Type": "application/x-amz-json-1.1", "X-Amz-Target": "AmazonSSM.GetParameter"})
    SigV4Auth(_credentials(), "ssm", cfg.region).add_auth(request)
    response = URLLib3Session(timeout=5).send(request.prepare())
    answer = json.loads(response.content or b"{}")
    if response.status_code == 200:
        return answer["Parameter"]["Value"]
    error = str(answer.get("__type", "")).rsplit("#", 1)[-1]
    if error == "ParameterNotFound":
        return None
    raise ParameterError(f"SSM GetParameter {name}: HTTP {response.status_code} {error or response.content[:200]!r}")


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
