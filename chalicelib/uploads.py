"""Direct browser uploads to Aliyun OSS: the function grants one object, the bytes go straight to OSS.

A grant is a PostObject form whose policy pins the server-chosen key, the content type and the
size range, signed (OSS signature V1) with temporary STS credentials; OSS itself refuses an
oversize body. Downloads are short-lived signed GET URLs. oss2 is imported only here, lazily.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import secrets
import time
from datetime import datetime, timezone
from typing import Any, Dict, List, Optional

from chalicelib import aliyun_sts
from chalicelib.config import settings
from chalicelib.errors import KefuError, bad_request, too_large

_SAFE_NAME = re.compile(r"[^A-Za-z0-9._-]+")
SUCCESS_STATUS = "201"


def _sanitize(file_name: str) -> str:
    base = file_name.replace("\\", "/").rsplit("/", 1)[-1].strip()
    cleaned = _SAFE_NAME.sub("_", base).strip("._")[:100]
    if not cleaned:
        raise bad_request("invalid_file_name", "the file name has no usable characters")
    return cleaned


def type_allowed(content_type: str, allowed: List[str]) -> bool:
    content_type = content_type.lower().strip()
    for pattern in allowed:
        pattern = pattern.lower()
        if pattern == content_type or (pattern.endswith("/*") and content_type.startswith(pattern[:-1])):
            return True
    return False


def key_prefix(site_id: str, conversation_id: str) -> str:
    return f"{settings().oss_prefix}{site_id}/{conversation_id}/"


def key_belongs_to(key: str, site_id: str, conversation_id: str) -> bool:
    prefix = key_prefix(site_id, conversation_id)
    rest = key[len(prefix):] if key.startswith(prefix) else ""
    return bool(re.fullmatch(r"[A-Za-z0-9]{16,64}/[A-Za-z0-9._-]{1,100}", rest))


def _bucket_url() -> str:
    """The bucket's URL as oss2 addresses it (virtual-hosted, or path-style for an IP endpoint)."""
    import oss2

    cfg = settings()
    return oss2.Bucket(oss2.AnonymousAuth(), cfg.oss_endpoint, cfg.oss_bucket)._make_url(cfg.oss_bucket, "")


def _iso8601(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.000Z")


def post_policy(key: str, content_type: str, max_bytes: int, security_token: str, expires_at: float) -> str:
    """The PostObject policy document, base64: what OSS checks the form against."""
    document = {
        "expiration": _iso8601(expires_at),
        "conditions": [
            {"bucket": settings().oss_bucket},
            ["eq", "$key", key],
            ["eq", "$Content-Type", content_type],
            ["content-length-range", 1, max_bytes],
            ["eq", "$success_action_status", SUCCESS_STATUS],
            ["eq", "$x-oss-security-token", security_token],
        ],
    }
    return base64.b64encode(json.dumps(document, separators=(",", ":")).encode()).decode()


def sign_policy_v1(policy_b64: str, access_key_secret: str) -> str:
    digest = hmac.new(access_key_secret.encode(), policy_b64.encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode()


def create_upload_grant(*, site_id: str, conversation_id: str, file_name: str, content_type: str,
                        size: int, max_bytes: int, allowed_types: List[str]) -> Dict[str, Any]:
    """Everything the browser needs to upload one file, under a key the server chose."""
    if size <= 0:
        raise bad_request("invalid_size", "size must be a positive number of bytes")
    if size > max_bytes:
        raise too_large("upload_too_large", f"files are limited to {max_bytes} bytes")
    if not content_type or len(content_type) > 100 or not type_allowed(content_type, allowed_types):
        raise KefuError("upload_type_not_allowed", f"allowed types: {', '.join(allowed_types)}", 415)
    if not file_name or len(file_name) > 255:
        raise bad_request("invalid_file_name", "file_name must be 1-255 characters")
    key = f"{key_prefix(site_id, conversation_id)}{secrets.token_hex(16)}/{_sanitize(file_name)}"
    creds = aliyun_sts.credentials.get()
    expires_at = int(time.time()) + settings().upload_url_ttl
    policy = post_policy(key, content_type, max_bytes, creds.security_token, expires_at)
    return {
        "key": key,
        "method": "POST",
        "url": _bucket_url(),
        "headers": {},
        "fields": {
            "key": key,
            "Content-Type": content_type,
            "success_action_status": SUCCESS_STATUS,
            "OSSAccessKeyId": creds.access_key_id,
            "x-oss-security-token": creds.security_token,
            "policy": policy,
            "Signature": sign_policy_v1(policy, creds.access_key_secret),
        },
        "expires_at": expires_at,
        "max_bytes": max_bytes,
    }


def _bucket() -> Any:
    import oss2

    cfg = settings()
    creds = aliyun_sts.credentials.get()
    auth = oss2.StsAuth(creds.access_key_id, creds.access_key_secret, creds.security_token)
    return oss2.Bucket(auth, cfg.oss_endpoint, cfg.oss_bucket, connect_timeout=5)


def signed_download_url(key: str) -> Dict[str, Any]:
    ttl = settings().download_url_ttl
    return {"url": _bucket().sign_url("GET", key, ttl, slash_safe=True), "expires_at": int(time.time()) + ttl}


def object_size(key: str) -> Optional[int]:
    """The uploaded object's size, or None if nothing is there."""
    import oss2

    try:
        return int(_bucket().head_object(key).content_length)
    except oss2.exceptions.NotFound:
        return None
