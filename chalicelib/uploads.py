"""Direct browser uploads to Aliyun OSS: the function grants one object, the bytes go straight to OSS.

A grant is a PostObject form whose policy pins the server-chosen key, the content type, the size
range and no-overwrite, signed (OSS signature V4, OSS4-HMAC-SHA256) with temporary STS
credentials: OSS itself refuses an oversize body, another key, another type or a second upload.
Downloads are short-lived V4-signed GET URLs. Building a grant needs only hmac; oss2 is imported
lazily for downloads and HEAD, so the chat functions' cold start never pays for it.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import json
import re
import secrets
import urllib.parse
from datetime import datetime, timezone
from typing import Any, Dict, List, Optional

from chalicelib import aliyun_sts
from chalicelib.config import settings
from chalicelib.errors import KefuError, bad_request, too_large

V4_ALGORITHM = "OSS4-HMAC-SHA256"
SUCCESS_STATUS = "201"
_SAFE = re.compile(r"[^A-Za-z0-9._-]+")
_MIME = re.compile(r"[a-z0-9][a-z0-9!#$&^_.+-]{0,63}/[a-z0-9][a-z0-9!#$&^_.+-]{0,63}")
_ID = re.compile(r"[A-Za-z0-9_.:-]{1,128}")
_KEY_TAIL = re.compile(r"[A-Za-z0-9]{16,64}/[A-Za-z0-9._-]{1,100}")
# Types a browser runs as a page when a download URL is opened: only an exact allowlist entry
# admits them, never a wildcard such as "image/*" or "text/*".
ACTIVE_TYPES = frozenset({
    "image/svg+xml", "text/html", "application/xhtml+xml", "text/xml", "application/xml",
    "text/javascript", "application/javascript", "application/x-javascript",
})
_oss_session: Any = None


def type_allowed(content_type: str, allowed: List[str]) -> bool:
    content_type = content_type.lower().strip()
    for pattern in (p.lower().strip() for p in allowed):
        if pattern == content_type:
            return True
        if content_type in ACTIVE_TYPES:
            continue
        if pattern == "*/*" or (pattern.endswith("/*") and content_type.startswith(pattern[:-1])):
            return True
    return False


def _sanitize(file_name: str) -> str:
    """The last path segment, reduced to ASCII letters, digits and ._- (the display name is kept
    elsewhere, with the attachment); a name with nothing usable becomes "file"."""
    base = file_name.replace("\\", "/").rsplit("/", 1)[-1].strip()
    stem, dot, extension = base.rpartition(".")
    if not dot:
        stem, extension = base, ""
    stem = _SAFE.sub("_", stem).strip("._-")[:80] or "file"
    extension = _SAFE.sub("", extension)[:16]
    return f"{stem}.{extension}" if extension else stem


def key_prefix(site_id: str, conversation_id: str) -> str:
    return f"{settings().oss_prefix}{site_id}/{conversation_id}/"


def key_belongs_to(key: str, site_id: str, conversation_id: str) -> bool:
    """Whether ``key`` is of the form this module issues for that site's conversation."""
    if not (isinstance(key, str) and _ID.fullmatch(site_id or "") and _ID.fullmatch(conversation_id or "")):
        return False
    prefix = key_prefix(site_id, conversation_id)
    return key.startswith(prefix) and bool(_KEY_TAIL.fullmatch(key[len(prefix):]))


def bucket_url(endpoint: str, bucket: str) -> str:
    """Where a PostObject form goes, the bucket addressed as oss2 addresses it: path-style for an
    IP or localhost endpoint (the local stand-in), virtual-hosted otherwise."""
    parts = urllib.parse.urlsplit(endpoint if "://" in endpoint else "http://" + endpoint)
    host = parts.hostname or ""
    try:
        path_style = host == "localhost" or bool(ipaddress.ip_address(host))
    except ValueError:
        path_style = False
    if path_style:
        return f"{parts.scheme}://{parts.netloc}/{bucket}/"
    return f"{parts.scheme}://{bucket}.{parts.netloc}/"


def v4_signing_key(secret: str, date: str, region: str) -> bytes:
    key = ("aliyun_v4" + secret).encode()
    for part in (date, region, "oss", "aliyun_v4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    return key


def _iso8601(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.000Z")


def _policy(expires_at: float, conditions: List[Any]) -> str:
    document = {"expiration": _iso8601(expires_at), "conditions": conditions}
    return base64.b64encode(json.dumps(document, separators=(",", ":")).encode()).decode()


def _validate(site_id: str, conversation_id: str, file_name: str, content_type: str, size: int,
              max_bytes: int, allowed_types: List[str]) -> str:
    if isinstance(size, bool) or not isinstance(size, int) or size <= 0:
        raise bad_request("invalid_size", "size must be a positive number of bytes")
    if size > max_bytes:
        raise too_large("upload_too_large", f"files are limited to {max_bytes} bytes")
    content_type = content_type.strip().lower() if isinstance(content_type, str) else ""
    if not _MIME.fullmatch(content_type) or not type_allowed(content_type, allowed_types):
        raise KefuError("upload_type_not_allowed", f"allowed types: {', '.join(allowed_types)}", 415)
    if not isinstance(file_name, str) or not file_name.strip() or len(file_name) > 255 \
            or any(ord(c) < 32 or ord(c) == 127 for c in file_name):
        raise bad_request("invalid_file_name", "file_name must be 1-255 printable characters")
    if not _ID.fullmatch(site_id or "") or not _ID.fullmatch(conversation_id or ""):
        raise bad_request("invalid_conversation_id", "the conversation cannot hold uploads")
    return content_type


def create_upload_grant(*, site_id: str, conversation_id: str, file_name: str, content_type: str,
                        size: int, max_bytes: int, allowed_types: List[str]) -> Dict[str, Any]:
    """Everything the browser needs to upload one file, under a key the server chose.

    The browser sends ``fields`` (in order) and then the file as the last field, named "file",
    in a multipart/form-data POST to ``url``.
    """
    content_type = _validate(site_id, conversation_id, file_name, content_type, size, max_bytes, allowed_types)
    cfg = settings()
    if not (cfg.oss_endpoint and cfg.oss_bucket and cfg.oss_region):
        raise KefuError("uploads_not_configured", "uploads are not configured (OSS endpoint, bucket, region)", 503)
    key = f"{key_prefix(site_id, conversation_id)}{secrets.token_hex(16)}/{_sanitize(file_name)}"

    cache = aliyun_sts.credentials
    creds = cache.get(valid_for=cfg.upload_url_ttl)
    now = cache.now()
    expires_at = int(now) + cache.usable_for(creds, cfg.upload_url_ttl)
    timestamp = datetime.fromtimestamp(now, tz=timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    credential = f"{creds.access_key_id}/{timestamp[:8]}/{cfg.oss_region}/oss/aliyun_v4_request"
    policy = _policy(expires_at, [
        {"bucket": cfg.oss_bucket},
        ["eq", "$key", key],
        ["eq", "$Content-Type", content_type],
        ["content-length-range", 1, max_bytes],
        ["eq", "$success_action_status", SUCCESS_STATUS],
        ["eq", "$x-oss-forbid-overwrite", "true"],  # one object: a replayed form gets 409
        {"x-oss-signature-version": V4_ALGORITHM},
        {"x-oss-credential": credential},
        {"x-oss-date": timestamp},
        {"x-oss-security-token": creds.security_token},
    ])
    signing_key = v4_signing_key(creds.access_key_secret, timestamp[:8], cfg.oss_region)
    return {
        "key": key,
        "method": "POST",
        "url": bucket_url(cfg.oss_endpoint, cfg.oss_bucket),
        "headers": {},
        "fields": {
            "key": key,
            "Content-Type": content_type,
            "success_action_status": SUCCESS_STATUS,
            "x-oss-forbid-overwrite": "true",
            "x-oss-signature-version": V4_ALGORITHM,
            "x-oss-credential": credential,
            "x-oss-date": timestamp,
            "x-oss-security-token": creds.security_token,
            "policy": policy,
            "x-oss-signature": hmac.new(signing_key, policy.encode(), hashlib.sha256).hexdigest(),
        },
        "expires_at": expires_at,
        "max_bytes": max_bytes,
    }


def _bucket(creds: aliyun_sts.TemporaryCredentials) -> Any:
    """An oss2 Bucket signing V4 with the temporary credentials and, always, the region: oss2's
    V4 URL signing would otherwise sign a scope with an empty region, which OSS refuses."""
    import oss2
    from oss2.credentials import StaticCredentialsProvider

    global _oss_session
    cfg = settings()
    if not (cfg.oss_endpoint and cfg.oss_bucket and cfg.oss_region):
        raise KefuError("uploads_not_configured", "uploads are not configured (OSS endpoint, bucket, region)", 503)
    if _oss_session is None:
        _oss_session = oss2.Session()  # one connection pool for the warm function
    auth = oss2.ProviderAuthV4(StaticCredentialsProvider(creds.access_key_id, creds.access_key_secret,
                                                         creds.security_token))
    return oss2.Bucket(auth, cfg.oss_endpoint, cfg.oss_bucket, region=cfg.oss_region,
                       session=_oss_session, connect_timeout=5)


def signed_download_url(key: str) -> Dict[str, Any]:
    """A short-lived signed GET URL for ``key`` (never a public one)."""
    cache = aliyun_sts.credentials
    wanted = settings().download_url_ttl
    creds = cache.get(valid_for=wanted)
    ttl = cache.usable_for(creds, wanted)  # a URL dies with the token it carries
    url = _bucket(creds).sign_url("GET", key, ttl, slash_safe=True)
    return {"url": url, "expires_at": int(cache.now()) + ttl}


def object_size(key: str) -> Optional[int]:
    """The uploaded object's size, or None if nothing is there."""
    import oss2

    creds = aliyun_sts.credentials.get(valid_for=30)
    try:
        return int(_bucket(creds).head_object(key).content_length)
    except oss2.exceptions.NotFound:
        return None
