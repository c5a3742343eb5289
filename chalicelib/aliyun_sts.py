"""Temporary Aliyun credentials from STS AssumeRole, cached in the warm function.

The session policy narrows the role to what uploads and downloads need (PutObject, GetObject)
on the bucket's upload prefix, DeleteObject only on its pending area; the credentials live for
STS's shortest allowed duration and are reused while they stay valid long enough for what is
signed with them: one STS call per many uploads. The aliyun SDK is imported only when a call is made.
"""
from __future__ import annotations

import json
import threading
import urllib.parse
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Callable, Dict, Optional

from chalicelib import clock
from chalicelib.config import settings
from chalicelib.errors import KefuError

DURATION_SECONDS = 900  # the shortest AssumeRole allows
# Kept in hand beyond the life of anything signed: clock skew between us and OSS, slow uploads.
REFRESH_MARGIN_SECONDS = 60
SESSION_NAME = "kefu-uploads"


@dataclass(frozen=True)
class TemporaryCredentials:
    access_key_id: str
    access_key_secret: str
    security_token: str
    expires_at: float  # epoch seconds


def session_policy(bucket: str, prefix: str) -> Dict[str, Any]:
    """Upload, read and copy under the prefix; delete only under its pending area (an attached
    upload's pending copy, removed once it is copied to its final key)."""
    return {
        "Version": "1",
        "Statement": [{
            "Effect": "Allow",
            "Action": ["oss:PutObject", "oss:GetObject"],
            "Resource": [f"acs:oss:*:*:{bucket}/{prefix}*"],
        }, {
            "Effect": "Allow",
            "Action": ["oss:DeleteObject"],
            "Resource": [f"acs:oss:*:*:{bucket}/{prefix}pending/*"],
        }],
    }


def _parse_expiration(text: str) -> float:
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc).timestamp()


def assume_role(client: Optional[Any] = None) -> TemporaryCredentials:
    """One AssumeRole call. ``client`` is an aliyunsdkcore AcsClient (made from settings if None)."""
    from aliyunsdksts.request.v20150401.AssumeRoleRequest import AssumeRoleRequest

    cfg = settings()
    if not (cfg.oss_bucket and cfg.sts_role_arn):
        raise KefuError("uploads_not_configured", "uploads are not configured (bucket, STS role)", 503)
    request = AssumeRoleRequest()
    request.set_RoleArn(cfg.sts_role_arn)
    request.set_RoleSessionName(SESSION_NAME)
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
    """An AcsClient for settings' long-term key, the request pointed at settings' STS endpoint."""
    from aliyunsdkcore.client import AcsClient

    cfg = settings()
    if not (cfg.aliyun_access_key_id and cfg.aliyun_access_key_secret):
        raise KefuError("uploads_not_configured", "uploads are not configured (Aliyun access key)", 503)
    endpoint = urllib.parse.urlparse(cfg.sts_endpoint or f"https://sts.{cfg.oss_region}.aliyuncs.com")
    request.set_protocol_type(endpoint.scheme or "https")
    request.set_endpoint(endpoint.hostname)
    port = endpoint.port or (443 if endpoint.scheme == "https" else 80)
    return AcsClient(cfg.aliyun_access_key_id, cfg.aliyun_access_key_secret, cfg.oss_region,
                     port=port, auto_retry=True, max_retry_time=2, connect_timeout=3, timeout=5)


class CredentialCache:
    """The warm function's temporary credentials. ``client`` (an AcsClient-like object with
    ``do_action_with_exception``) and ``clock`` are injectable for tests."""

    def __init__(self, client: Optional[Any] = None, clock: Optional[Callable[[], float]] = None) -> None:
        self._client = client
        self._clock = clock or (lambda: _now())
        self._current: Optional[TemporaryCredentials] = None
        self._lock = threading.Lock()

    def get(self, valid_for: float = 0) -> TemporaryCredentials:
        """Credentials that stay valid ``valid_for`` more seconds, plus the margin.

        ``valid_for`` is capped to what fresh credentials can offer, so a caller asking for more
        never makes every call go to STS; such a caller must cap its own lifetimes (see
        ``usable_for``)."""
        needed = min(valid_for, DURATION_SECONDS - 2 * REFRESH_MARGIN_SECONDS) + REFRESH_MARGIN_SECONDS
        with self._lock:
            if self._current is None or self._current.expires_at - self._clock() < needed:
                self._current = assume_role(self._client)
            return self._current

    def usable_for(self, credentials: TemporaryCredentials, wanted: float) -> int:
        """How long something signed now with ``credentials`` may live: ``wanted``, or less."""
        left = credentials.expires_at - REFRESH_MARGIN_SECONDS - self._clock()
        return max(1, int(min(wanted, left)))

    def now(self) -> float:
        return self._clock()


def _now() -> float:
    return clock.now()


credentials = CredentialCache()
