"""Direct browser uploads to Aliyun OSS: the function grants one object, the bytes go straight to OSS.

A grant is a PostObject form whose policy pins the server-chosen key (under the pending prefix),
the content type, the size range (at most the declared size), the cleaned file name (as object
metadata) and no-overwrite, signed (OSS signature V4, OSS4-HMAC-SHA256) with temporary STS
credentials: OSS itself refuses an oversize body, another key, another type or a second upload.

An uploaded object stays under ``<prefix>pending/`` until a message attaches it: attaching reads
the object's real size, type and name (a HEAD), checks them against the site's policy and copies
the object to its final key (``<prefix><site>/<conversation>/...``). A bucket lifecycle rule on the
pending prefix (infra/aliyun.py) deletes whatever was never attached.

Downloads are short-lived V4-signed GET URLs carrying ``response-content-disposition``: ``inline``
for raster images, ``attachment`` with the file name for anything else. Building a grant needs
only hmac; oss2 is imported lazily for downloads, HEAD and copies, so the chat functions' cold
start never pays for it.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import json
import logging
import mimetypes
import re
import secrets
import unicodedata
import urllib.parse
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Dict, List, Optional, Tuple

from chalicelib import aliyun_sts
from chalicelib.config import settings
from chalicelib.errors import KefuError, bad_request, too_large

log = logging.getLogger(__name__)

V4_ALGORITHM = "OSS4-HMAC-SHA256"
SUCCESS_STATUS = "201"
# Uploads land under <prefix>pending/ until attached; a lifecycle rule there deletes the rest.
# "pending" can therefore never be a site id that holds uploads (its final keys would expire).
PENDING_DIR = "pending"
# The cleaned display name travels with the object, percent-encoded (metadata is ASCII).
NAME_META = "x-oss-meta-name"
MAX_NAME_CHARS = 255
_SAFE = re.compile(r"[^A-Za-z0-9._-]+")
_MIME = re.compile(r"[a-z0-9][a-z0-9!#$&^_.+-]{0,63}/[a-z0-9][a-z0-9!#$&^_.+-]{0,63}")
_ID = re.compile(r"[A-Za-z0-9_.:-]{1,128}")
_KEY_TAIL = re.compile(r"[A-Za-z0-9]{16,64}/[A-Za-z0-9._-]{1,100}")
# Characters a file name never needs and a spoof does: C0 and C1 controls, the bidi embeddings,
# overrides, isolates and marks (U+202A-202E, U+2066-2069, U+200E/200F, U+061C), line and
# paragraph separators, zero-width space, word joiner and invisible operators, the BOM, the
# deprecated format characters and interlinear annotation marks. (ZWNJ/ZWJ stay: scripts and
# emoji need them.)
_INVISIBLE = re.compile("[\u0000-\u001f\u007f-\u009f\u061c\u200b\u200e\u200f\u2028-\u202e"
                        "\u2060-\u2064\u2066-\u206f\ufeff\ufff9-\ufffb]")
_WHITESPACE_CONTROLS = re.compile("[\t\n\v\f\r\u0085\u2028\u2029]")
# Types a browser runs as a page when a download URL is opened: only an exact allowlist entry
# admits them, never a wildcard such as "image/*" or "text/*".
ACTIVE_TYPES = frozenset({
    "image/svg+xml", "text/html", "application/xhtml+xml", "text/xml", "application/xml",
    "text/javascript", "application/javascript", "application/x-javascript",
})
# Served inline (shown in the page); anything else downloads as an attachment with its name.
INLINE_IMAGE_TYPES = frozenset({"image/png", "image/jpeg", "image/gif", "image/webp", "image/avif", "image/bmp"})
# The extensions a file of each type may carry; a name ending otherwise gets the first appended,
# so what is saved is what was checked ("invoice.pdf.exe" as application/pdf saves as a .pdf).
_EXTENSIONS = {
    "image/png": (".png",), "image/jpeg": (".jpg", ".jpeg", ".jpe", ".jfif"), "image/gif": (".gif",),
    "image/webp": (".webp",), "image/avif": (".avif",), "image/bmp": (".bmp",),
    "application/pdf": (".pdf",), "text/plain": (".txt", ".text", ".log"),
}
# Extensions an operating system runs on a double click: never taken from mimetypes' guesses for
# a type outside the table above (application/octet-stream guesses .exe, text/plain .bat).
_RUNNABLE = frozenset({
    ".exe", ".dll", ".com", ".bat", ".cmd", ".scr", ".pif", ".msi", ".msp", ".msu", ".vbs", ".vbe",
    ".js", ".jse", ".mjs", ".wsf", ".wsh", ".ps1", ".psm1", ".hta", ".cpl", ".jar", ".lnk", ".reg",
    ".sh", ".app", ".deb", ".rpm", ".dmg", ".apk", ".so", ".a", ".o", ".obj", ".deploy",
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


def clean_name(file_name: str) -> str:
    """The name as it is shown: its last path segment, NFC, without control, bidi or invisible
    format characters (whitespace controls become spaces, runs of spaces one), at most 255
    characters. Empty if nothing visible is left."""
    name = unicodedata.normalize("NFC", file_name)
    name = _WHITESPACE_CONTROLS.sub(" ", name)
    name = _INVISIBLE.sub("", name)
    name = name.replace("\\", "/").rsplit("/", 1)[-1]
    name = " ".join(name.split())
    if len(name) > MAX_NAME_CHARS:
        stem, dot, extension = name.rpartition(".")
        if dot and 0 < len(extension) <= 16:
            name = stem[:MAX_NAME_CHARS - len(extension) - 1].rstrip() + "." + extension
        else:
            name = name[:MAX_NAME_CHARS].rstrip()
    return name


def _extensions_for(content_type: str) -> Tuple[str, ...]:
    known = _EXTENSIONS.get(content_type)
    if known:
        return known
    guessed = tuple(e for e in mimetypes.guess_all_extensions(content_type, strict=True) if e not in _RUNNABLE)
    return guessed or (".bin",)


def display_name(file_name: str, content_type: str) -> str:
    """``clean_name``, with an extension that fits ``content_type`` (appended if it has none)."""
    name = clean_name(file_name) or "file"
    allowed = _extensions_for(content_type.lower())
    stem, dot, extension = name.rpartition(".")
    if dot and stem and "." + extension.lower() in allowed:
        return name
    suffix = allowed[0]
    return name[:MAX_NAME_CHARS - len(suffix)].rstrip() + suffix


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
    """Where a conversation's attached files live."""
    return f"{settings().oss_prefix}{site_id}/{conversation_id}/"


def pending_prefix(site_id: str = "", conversation_id: str = "") -> str:
    """Where uploads wait to be attached (the whole pending area without arguments): the prefix
    the bucket's lifecycle rule expires."""
    prefix = f"{settings().oss_prefix}{PENDING_DIR}/"
    return f"{prefix}{site_id}/{conversation_id}/" if site_id else prefix


def _ids_ok(site_id: Any, conversation_id: Any) -> bool:
    return (isinstance(site_id, str) and isinstance(conversation_id, str) and bool(_ID.fullmatch(site_id))
            and bool(_ID.fullmatch(conversation_id)) and site_id != PENDING_DIR)


def key_belongs_to(key: str, site_id: str, conversation_id: str) -> bool:
    """Whether ``key`` is an attached file's key, of the form this module makes for that site's
    conversation."""
    if not (isinstance(key, str) and _ids_ok(site_id, conversation_id)):
        return False
    prefix = key_prefix(site_id, conversation_id)
    return key.startswith(prefix) and bool(_KEY_TAIL.fullmatch(key[len(prefix):]))


def final_key(key: Any, site_id: str, conversation_id: str) -> Optional[str]:
    """The attached key for ``key``, a grant's pending key or an attached key of that conversation;
    None for anything this module did not issue for it."""
    if not (isinstance(key, str) and _ids_ok(site_id, conversation_id)):
        return None
    pending = pending_prefix(site_id, conversation_id)
    if key.startswith(pending) and _KEY_TAIL.fullmatch(key[len(pending):]):
        return key_prefix(site_id, conversation_id) + key[len(pending):]
    return key if key_belongs_to(key, site_id, conversation_id) else None


def pending_key(final: str, site_id: str, conversation_id: str) -> str:
    return pending_prefix(site_id, conversation_id) + final[len(key_prefix(site_id, conversation_id)):]


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


def check_content_type(content_type: Any, allowed_types: List[str], code: str = "upload_type_not_allowed") -> str:
    """The type, normalised, if the site's policy admits it; else 415 ``code``."""
    content_type = content_type.strip().lower() if isinstance(content_type, str) else ""
    if not _MIME.fullmatch(content_type) or not type_allowed(content_type, allowed_types):
        raise KefuError(code, f"allowed types: {', '.join(allowed_types)}", 415)
    return content_type


def validate(site_id: str, conversation_id: str, file_name: Any, content_type: Any, size: Any,
             max_bytes: int, allowed_types: List[str]) -> Tuple[str, str]:
    """What a grant request must satisfy; returns (content type, display name)."""
    if isinstance(size, bool) or not isinstance(size, int) or size <= 0:
        raise bad_request("invalid_size", "size must be a positive number of bytes")
    if size > max_bytes:
        raise too_large("upload_too_large", f"files are limited to {max_bytes} bytes")
    content_type = check_content_type(content_type, allowed_types)
    if not isinstance(file_name, str) or len(file_name) > MAX_NAME_CHARS or not clean_name(file_name):
        raise bad_request("invalid_file_name", "file_name must be 1-255 characters, some of them visible")
    if not _ids_ok(site_id, conversation_id):
        raise bad_request("invalid_conversation_id", "the conversation cannot hold uploads")
    return content_type, display_name(file_name, content_type)


def check_configured() -> None:
    cfg = settings()
    if not (cfg.oss_endpoint and cfg.oss_bucket and cfg.oss_region):
        raise KefuError("uploads_not_configured", "uploads are not configured (OSS endpoint, bucket, region)", 503)


def create_upload_grant(*, site_id: str, conversation_id: str, file_name: str, content_type: str,
                        size: int, max_bytes: int, allowed_types: List[str]) -> Dict[str, Any]:
    """Everything the browser needs to upload one file, under a key the server chose.

    The browser sends ``fields`` (in order) and then the file as the last field, named "file",
    in a multipart/form-data POST to ``url``. The form takes at most ``size`` bytes (the declared
    size, which quotas count) and lands under the pending prefix.
    """
    content_type, name = validate(site_id, conversation_id, file_name, content_type, size, max_bytes,
                                  allowed_types)
    check_configured()
    cfg = settings()
    key = f"{pending_prefix(site_id, conversation_id)}{secrets.token_hex(16)}/{_sanitize(name)}"
    name_meta = urllib.parse.quote(name, safe="")

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
        ["content-length-range", 1, size],
        ["eq", f"${NAME_META}", name_meta],
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
            NAME_META: name_meta,
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
        "max_bytes": size,
    }


def _bucket(creds: aliyun_sts.TemporaryCredentials) -> Any:
    """An oss2 Bucket signing V4 with the temporary credentials and, always, the region: oss2's
    V4 URL signing would otherwise sign a scope with an empty region, which OSS refuses."""
    import oss2
    from oss2.credentials import StaticCredentialsProvider

    global _oss_session
    check_configured()
    cfg = settings()
    if _oss_session is None:
        _oss_session = oss2.Session()  # one connection pool for the warm function
    auth = oss2.ProviderAuthV4(StaticCredentialsProvider(creds.access_key_id, creds.access_key_secret,
                                                         creds.security_token))
    return oss2.Bucket(auth, cfg.oss_endpoint, cfg.oss_bucket, region=cfg.oss_region,
                       session=_oss_session, connect_timeout=5)


def content_disposition(name: str, content_type: str) -> str:
    """``inline`` for a raster image; otherwise ``attachment`` with the (RFC 5987 encoded) name."""
    if (content_type or "").lower() in INLINE_IMAGE_TYPES:
        return "inline"
    encoded = urllib.parse.quote(display_name(name or "file", content_type or "application/octet-stream"),
                                 safe="!#$&+^`|")
    return f"attachment; filename*=UTF-8''{encoded}"


def signed_download_url(key: str, name: Optional[str] = None, content_type: Optional[str] = None) -> Dict[str, Any]:
    """A short-lived signed GET URL for ``key`` (never a public one), with the Content-Disposition
    OSS is to answer with (``content_disposition``); without a type, always an attachment."""
    cache = aliyun_sts.credentials
    wanted = settings().download_url_ttl
    creds = cache.get(valid_for=wanted)
    ttl = cache.usable_for(creds, wanted)  # a URL dies with the token it carries
    disposition = content_disposition(name or key.rsplit("/", 1)[-1], content_type or "application/octet-stream")
    url = _bucket(creds).sign_url("GET", key, ttl, slash_safe=True,
                                  params={"response-content-disposition": disposition})
    return {"url": url, "expires_at": int(cache.now()) + ttl}


@dataclass(frozen=True)
class StoredObject:
    """What OSS says of an object: the facts an attachment is made of."""
    key: str
    size: int
    content_type: str
    name: str  # the display name recorded at grant (or the key's last segment)
    etag: Optional[str]


def head_object(key: str) -> Optional[StoredObject]:
    """The object's size, type and recorded name from a HEAD, or None if nothing is there."""
    import oss2

    creds = aliyun_sts.credentials.get(valid_for=30)
    try:
        head = _bucket(creds).head_object(key)
    except oss2.exceptions.NotFound:
        return None
    recorded = head.headers.get(NAME_META)
    name = urllib.parse.unquote(recorded) if recorded else key.rsplit("/", 1)[-1]
    return StoredObject(key=key, size=int(head.content_length or 0),
                        content_type=(head.content_type or "").split(";")[0].strip().lower(),
                        name=name, etag=head.etag)


def promote(pending: str, final: str) -> bool:
    """Copy an attached upload out of the pending prefix (the lifecycle rule would delete it
    there), then remove the pending copy. Idempotent: a retry that finds the final object keeps it.

    The pending object cannot change between the HEAD that checked it and this copy: its form
    forbids overwriting, and a form replayed after the delete below re-creates it only with the
    same pinned type and size limit, never over the final object (no-overwrite here too).
    Returns False if the final object was there already (attached by a concurrent send): the
    caller then describes that one."""
    import oss2

    creds = aliyun_sts.credentials.get(valid_for=30)
    bucket = _bucket(creds)
    copied = True
    try:
        bucket.copy_object(settings().oss_bucket, pending, final, headers={"x-oss-forbid-overwrite": "true"})
    except oss2.exceptions.ServerError as exc:
        if exc.status != 409:  # 409 FileAlreadyExists: a concurrent attach of the same upload
            raise
        copied = False
    try:
        bucket.delete_object(pending)
    except oss2.exceptions.OssError:  # the lifecycle rule removes it a day later anyway
        log.warning("could not delete the attached upload's pending copy %s", pending, exc_info=True)
    return copied


def object_size(key: str) -> Optional[int]:
    """The uploaded object's size, or None if nothing is there."""
    found = head_object(key)
    return found.size if found else None
