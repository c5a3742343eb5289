"""OSS request signatures, version 1 (HMAC-SHA1), as OSS verifies them: for the local stand-in.

Written from Aliyun's published algorithm, not from oss2: tests check it both against oss2's
output and against Aliyun's documented example, so a shared misreading cannot pass unnoticed.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
from typing import Dict, Mapping, Optional

# Query parameters that are part of the canonicalized resource (OSS's sub-resources and the
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
    return base64.b64encode(hmac.new(secret.encode(), text.encode(), hashlib.sha1).digest()).decode()


def signatures_match(expected: str, given: Optional[str]) -> bool:
    return given is not None and hmac.compare_digest(expected.encode(), given.encode())


def parse_authorization(header: Optional[str]) -> Optional[Dict[str, str]]:
    """``OSS <AccessKeyId>:<Signature>`` -> its parts, or None if not of that form."""
    if not header or not header.startswith("OSS ") or ":" not in header:
        return None
    access_key_id, _, signature = header[4:].partition(":")
    return {"access_key_id": access_key_id.strip(), "signature": signature.strip()}
