"""One SSM parameter, fetched with a single signed HTTPS call and no boto3 client.

A boto3 (or botocore) SSM client loads the whole SSM service model: ~70 ms of a cold start
(bench/cold_start.py), more than the rest of the secret fetch together. GetParameter is one JSON
POST (chalicelib/signed_http.py; botocore's urllib3 session cost ~1.5 ms more: its pool, and an
IDNA codec import for the host name); the credentials are the function's (environment variables).
"""
from __future__ import annotations

import json
from typing import Optional

from chalicelib.config import settings


class ParameterError(RuntimeError):
    """SSM refused or failed (not "no such parameter", which is None)."""


def get_parameter(name: str) -> Optional[str]:
    """The decrypted value of the parameter ``name``, or None if it does not exist."""
    from chalicelib import signed_http

    cfg = settings()
    ssm = signed_http.Endpoint(cfg.ssm_endpoint, "ssm", cfg.region)
    try:
        status, content = ssm.call("POST", "/", json.dumps({"Name": name, "WithDecryption": True}).encode(), {
            "Content-Type": "application/x-amz-json-1.1", "X-Amz-Target": "AmazonSSM.GetParameter"})
    except (*signed_http.TRANSPORT_ERRORS, signed_http.NoCredentials) as error:
        raise ParameterError(f"SSM GetParameter {name}: {error}") from error
    answer = json.loads(content or b"{}")
    if status == 200:
        return answer["Parameter"]["Value"]
    error = str(answer.get("__type", "")).rsplit("#", 1)[-1]
    if error == "ParameterNotFound":
        return None
    raise ParameterError(f"SSM GetParameter {name}: HTTP {status} {error or content[:200]!r}")
