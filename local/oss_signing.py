"""OSS request signatures as OSS verifies them, for the local stand-in: V1 (HMAC-SHA1) and V4
(OSS4-HMAC-SHA256), in headers, in signed URLs and for PostObject policies.

Written from Aliyun's published algorithms, not from oss2 or chalicelib: tests check it against
oss2's output and against the known answers in Aliyun's documentation and SDK unit tests, so a
misreading shared by the signer and this verifier cannot pass unnoticed.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import urllib.parse
from typing import Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

V4_ALGORITHM = "OSS4-HMAC-SHA256"
V4_TERMINATOR = "aliyun_v4_request"
UNSIGNED_PAYLOAD = "UNSIGNED-PAYLOAD"
# Headers every V4 signature covers when present; others only when named in AdditionalHeaders.
V4_DEFAULT_SIGNED = ("content-type", "content-md5")

# V1: query parameters that are part of the canonicalized resource (OSS's sub-resources and the
# response-* overrides). Anything else in the query string is not signed.
SUBRESOURCES = frozenset({
    "acl", "uploads", "location", "cors", "logging", "website", "referer", "lifecycle", "delete",
    "append", "tagging", "objectMeta", "uploadId", "partNumber", "security-token", "position",
    "img", "style", "styleName", "replication", "replicationProgress", "replicationLocation",
    "cname", "bucketInfo", "comp", "qos", "live", "status", "vod", "startTime", "endTime",
    "symlink", "x-oss-process", "response-content-type", "response-content-language",
    "response-expires", "response-cache-control", "response-content-disposition",
    "response-content-encoding", "udf", "udfName", "udfImage", "udfId", "udfImageDesc",
    "udfApplication", "udfApplicationLog", "restore", "callback", "callback-var", "policy",
    "stat", "encryption", "versions", "versioning", "versionId", "x-oss-traffic-limit",
    "requestPayment", "worm", "wormId", "wormExtend", "inventory", "inventoryId",
    "continuation-token", "asyncFetch", "sequential", "x-oss-request-payer",
})


def parse_query(raw: str) -> List[Tuple[str, str]]:
    """Query pairs, percent-decoded as RFC 3986 says ('+' stays '+', unlike form decoding)."""
    pairs = []
    for part in raw.split("&") if raw else []:
        name, _, value = part.partition("=")
        pairs.append((urllib.parse.unquote(name), urllib.parse.unquote(value)))
    return pairs


def signatures_match(expected: str, given: Optional[str]) -> bool:
    return given is not None and hmac.compare_digest(expected.encode(), given.encode())


# ---- V1 -------------------------------------------------------------------------------------

def canonicalized_oss_headers(headers: Mapping[str, str]) -> str:
    pairs = sorted((name.lower().strip(), value.strip()) for name, value in headers.items()
                   if name.lower().startswith("x-oss-"))
    return "".join(f"{name}:{value}\n" for name, value in pairs)


def canonicalized_resource(bucket: Optional[str], key: str, params: Mapping[str, str]) -> str:
    resource = f"/{bucket}/{key}" if bucket else "/"
    signed = sorted((name, value) for name, value in params.items() if name in SUBRESOURCES)
    if signed:
        resource += "?" + "&".join(f"{name}={value}" if value else name for name, value in signed)
    return resource


def string_to_sign(method: str, headers: Mapping[str, str], date_or_expires: str,
                   bucket: Optional[str], key: str, params: Mapping[str, str]) -> str:
    lower = {name.lower(): value for name, value in headers.items()}
    return "\n".join([
        method.upper(),
        lower.get("content-md5", ""),
        lower.get("content-type", ""),
        date_or_expires,
        canonicalized_oss_headers(headers) + canonicalized_resource(bucket, key, params),
    ])


def sign(secret: str, text: str) -> str:
    """V1: base64 HMAC-SHA1. Also a V1 PostObject signature, with the base64 policy as the text."""
    return base64.b64encode(hmac.new(secret.encode(), text.encode(), hashlib.sha1).digest()).decode()


def parse_authorization(header: Optional[str]) -> Optional[Dict[str, str]]:
    """``OSS <AccessKeyId>:<Signature>`` -> its parts, or None if not of that form."""
    if not header or not header.startswith("OSS ") or ":" not in header:
        return None
    access_key_id, _, signature = header[4:].partition(":")
    return {"access_key_id": access_key_id.strip(), "signature": signature.strip()}


# ---- V4 -------------------------------------------------------------------------------------

def v4_uri_encode(text: str, keep_slash: bool) -> str:
    """Every byte but A-Z a-z 0-9 - _ . ~ (and '/' in the path) as %XX, upper-case hex."""
    return urllib.parse.quote(text, safe="-_.~" + ("/" if keep_slash else ""))


def v4_canonical_query(params: Iterable[Tuple[str, str]]) -> str:
    encoded = sorted((v4_uri_encode(name, False), v4_uri_encode(value, False)) for name, value in params)
    return "&".join(f"{name}={value}" if value else name for name, value in encoded)


def v4_signed_headers(headers: Mapping[str, str], additional: Sequence[str]) -> List[Tuple[str, str]]:
    """The (name, value) pairs a V4 signature covers: x-oss-*, Content-Type/MD5, the additional ones."""
    wanted = {name.lower() for name in additional}
    pairs = []
    for name, value in headers.items():
        lower = name.lower()
        if lower.startswith("x-oss-") or lower in V4_DEFAULT_SIGNED or lower in wanted:
            pairs.append((lower, value.strip()))
    return sorted(pairs)


def v4_canonical_request(method: str, bucket: Optional[str], key: str, params: Iterable[Tuple[str, str]],
                         headers: Mapping[str, str], additional: Sequence[str]) -> str:
    lower = {name.lower(): value for name, value in headers.items()}
    uri = v4_uri_encode(f"/{bucket}/{key}" if bucket else "/", True)
    canonical_headers = "".join(f"{name}:{value}\n" for name, value in v4_signed_headers(headers, additional))
    return "\n".join([
        method.upper(),
        uri,
        v4_canonical_query(params),
        canonical_headers,
        ";".join(sorted(name.lower() for name in additional)),
        lower.get("x-oss-content-sha256", UNSIGNED_PAYLOAD),
    ])


def v4_scope(date: str, region: str, product: str = "oss") -> str:
    return f"{date}/{region}/{product}/{V4_TERMINATOR}"


def v4_string_to_sign(timestamp: str, scope: str, canonical_request: str) -> str:
    digest = hashlib.sha256(canonical_request.encode()).hexdigest()
    return f"{V4_ALGORITHM}\n{timestamp}\n{scope}\n{digest}"


def v4_signing_key(secret: str, date: str, region: str, product: str = "oss") -> bytes:
    key = ("aliyun_v4" + secret).encode()
    for part in (date, region, product, V4_TERMINATOR):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    return key


def v4_sign(signing_key: bytes, text: str) -> str:
    """Hex HMAC-SHA256: a request's string to sign, or a V4 PostObject's base64 policy."""
    return hmac.new(signing_key, text.encode(), hashlib.sha256).hexdigest()


def parse_v4_authorization(header: Optional[str]) -> Optional[Dict[str, str]]:
    """``OSS4-HMAC-SHA256 Credential=..., AdditionalHeaders=..., Signature=...`` -> its fields."""
    if not header or not header.startswith(V4_ALGORITHM + " "):
        return None
    fields = {}
    for part in header[len(V4_ALGORITHM) + 1:].split(","):
        name, sep, value = part.strip().partition("=")
        if sep:
            fields[name] = value.strip()
    if "Credential" not in fields or "Signature" not in fields:
        return None
    return fields


def parse_v4_credential(credential: str) -> Optional[Dict[str, str]]:
    """``<AccessKeyId>/<yyyymmdd>/<region>/<product>/aliyun_v4_request`` -> its parts."""
    parts = credential.split("/")
    if len(parts) != 5 or parts[4] != V4_TERMINATOR or not all(parts[:4]):
        return None
    access_key_id, date, region, product, _ = parts
    if len(date) != 8 or not date.isdigit():
        return None
    return {"access_key_id": access_key_id, "date": date, "region": region, "product": product}
