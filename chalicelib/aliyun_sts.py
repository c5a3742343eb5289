"""Temporary Aliyun credentials from STS AssumeRole, cached in the warm function.

The session policy narrows the role to what uploads and downloads need (PutObject, GetObject)
on the bucket's upload prefix; the credentials live for STS's shortest allowed duration and
are reused until shortly before they expire: one STS call per many uploads.
"""
from __future__ import annotations

import json
import threading
import time
import urllib.parse
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Callable, Dict, Optional

from chalicelib.config import settings

DURATION_SECONDS = 900  # the shortest AssumeRole allows
REFRESH_MARGIN_SECONDS = 120  # longer than any URL we sign with these credentials lives


@dataclass(frozen=True)
class TemporaryCredentials:
    access_key_id: str
    access_key_secret: str
    security_token: str
    expires_at: float  # epoch seconds


def session_policy(bucket: str, prefix: str) -> Dict[str, Any]:
    return {
        "Version": "1",
        "Statement": [{
            "Effect": "Allow",
            "Action": ["oss:PutObject", "oss:GetObject"],
            "Resource": [f"acs:oss:*:*:{bucket}/{prefix}*"],
        }],
    }


def _parse_expiration(text: str) -> float:
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc).timestamp()


def assume_role(client: Optional[Any] = None) -> TemporaryCredentials:
    """One AssumeRole call. ``client`` is an aliyunsdkcore AcsClient (made from settings if None)."""
    from aliyunsdksts.request.v20150401.AssumeRoleRequest import AssumeRoleRequest

    cfg = settings()
    request = AssumeRoleRequest()
    request.set_RoleArn(cfg.sts_role_arn)
    request.set_RoleSessionName("kefu-uploads")
    request.set_DurationSeconds(DURATION_SECONDS)
    request.set_Policy(json.dumps(session_policy(cfg.oss_bucket, cfg.oss_prefix), separators=(",", ":")))
    request.set_accept_format("JSON")
    if client is None:
        client = _client(request)
    body = json.loads(client.do_action_with_exception(request))
    credentials = body["Credentials"]
    return TemporaryCredentials(
        access_key_id=credentials["AccessKeyId"],
        access_key_secret=credentials["AccessKeySecret"],
        security_token=credentials["SecurityToken"],
        expires_at=_parse_expiration(credentials["Expiration"]),
    )


def _client(request: Any) -> Any:
    from aliyunsdkcore.client import AcsClient

    cfg = settings()
    endpoint = urllib.parse.urlparse(cfg.sts_endpoint or f"https://sts.{cfg.oss_region}.aliyuncs.com")
    request.set_protocol_type(endpoint.scheme or "https")
    request.set_endpoint(endpoint.hostname)
    port = endpoint.port or (443 if endpoint.scheme == "https" else 80)
    return AcsClient(cfg.aliyun_access_key_id, cfg.aliyun_access_key_secret, cfg.oss_region,
                     port=port, auto_retry=True, max_retry_time=2, connect_timeout=3, timeout=5)


class CredentialCache:
    def __init__(self, fetch: Callable[[], TemporaryCredentials] = assume_role,
                 clock: Callable[[], float] = time.time) -> None:
        self._fetch = fetch
        self._clock = clock
        self._current: Optional[TemporaryCredentials] = None
        self._lock = threading.Lock()

    def get(self) -> TemporaryCredentials:
        with self._lock:
            if self._current is None or self._current.expires_at - self._clock() < REFRESH_MARGIN_SECONDS:
                self._current = self._fetch()
            return self._current


credentials = CredentialCache()
