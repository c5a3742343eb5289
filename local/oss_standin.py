"""A local Aliyun OSS that checks signatures as OSS does, and keeps objects on disk.

Path-style addressing (``/{bucket}/{key}``), which oss2 uses for an IP or localhost endpoint.
Verifies OSS signatures V4 (OSS4-HMAC-SHA256) and V1 (HMAC-SHA1) in the Authorization header, in
signed URLs and in PostObject forms: the signature, the credential scope (date, region, product),
expiry, the STS security token, the signed headers, the PostObject policy conditions
(``content-length-range`` included, enforced while the body streams in) and the STS session
policy (action and key prefix). Errors come back as OSS's XML with OSS's codes and statuses, so
oss2 raises what it would raise against OSS.

Operations: PutObject, PostObject, GetObject, HeadObject, DeleteObject, CopyObject, and the
bucket's lifecycle (Put/Get/DeleteBucketLifecycle). Objects keep their ``x-oss-meta-*`` metadata.
GetObject answers with ``X-Content-Type-Options: nosniff`` and honours the ``response-*`` query
overrides of a signed request as OSS does (``response-content-disposition`` and the others;
``response-content-type`` is refused, as OSS refuses it on GET). Lifecycle expiry rules (by
prefix, ``Days`` after the last modification or ``CreatedBeforeDate``) delete objects on the
stand-in's clock.
"""
from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import pathlib
import threading
import time
import urllib.parse
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from email.utils import formatdate, parsedate_to_datetime
from typing import Any, Callable, Dict, List, Optional, Tuple
from xml.sax.saxutils import escape

from aiohttp import BodyPartReader, web

from local import oss_signing as sig
from local.credentials import Credential, CredentialRegistry

DEFAULT_REGION = "cn-hangzhou"
MAX_CLOCK_SKEW_SECONDS = 15 * 60
MAX_URL_EXPIRES_SECONDS = 7 * 24 * 3600  # the longest a V4 signature may live
MAX_OBJECT_BYTES = 5 * 1024 ** 3  # PostObject's own ceiling

Clock = Callable[[], float]


class OssError(Exception):
    def __init__(self, status: int, code: str, message: str, **details: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.details = status, code, message, details

    def response(self, headers: Optional[Dict[str, str]] = None) -> web.Response:
        request_id = uuid.uuid4().hex[:24].upper()
        extra = "".join(f"  <{name}>{escape(value)}</{name}>\n" for name, value in self.details.items())
        body = ('<?xml version="1.0" encoding="UTF-8"?>\n<Error>\n'
                f"  <Code>{self.code}</Code>\n  <Message>{escape(self.message)}</Message>\n"
                f"  <RequestId>{request_id}</RequestId>\n  <HostId>oss-standin</HostId>\n{extra}</Error>\n")
        return web.Response(status=self.status, body=body.encode(), content_type="application/xml",
                            headers={"x-oss-request-id": request_id, **(headers or {})})


def _denied(message: str) -> OssError:
    return OssError(403, "AccessDenied", message)


def _skewed() -> OssError:
    return OssError(403, "RequestTimeTooSkewed",
                    "The difference between the request time and the current time is too large.")


def _invalid(message: str) -> OssError:
    return OssError(400, "InvalidArgument", message)


def _mismatch(string_to_sign: str) -> OssError:
    return OssError(403, "SignatureDoesNotMatch",
                    "The request signature we calculated does not match the signature you provided.",
                    StringToSign=string_to_sign)


def _parse_v4_time(text: Optional[str]) -> float:
    try:
        return datetime.strptime(text or "", "%Y%m%dT%H%M%SZ").replace(tzinfo=timezone.utc).timestamp()
    except ValueError:
        raise _denied("x-oss-date is missing or not of the form yyyymmddThhmmssZ.")


@dataclass
class ObjectStore:
    root: pathlib.Path

    def _path(self, bucket: str, key: str) -> pathlib.Path:
        return self.root / bucket / hashlib.sha256(f"{bucket}/{key}".encode()).hexdigest()

    def exists(self, bucket: str, key: str) -> bool:
        return self._path(bucket, key).exists()

    def put(self, bucket: str, key: str, data: bytes, content_type: str,
            meta: Optional[Dict[str, str]] = None, modified: Optional[float] = None) -> str:
        path = self._path(bucket, key)
        path.parent.mkdir(parents=True, exist_ok=True)
        etag = hashlib.md5(data).hexdigest().upper()
        path.with_suffix(".json").write_text(json.dumps({
            "key": key, "content_type": content_type, "etag": etag, "meta": meta or {},
            "modified": time.time() if modified is None else modified}))
        tmp = path.with_suffix(".tmp")
        tmp.write_bytes(data)
        tmp.replace(path)  # the object appears whole, after its metadata
        return etag

    def delete(self, bucket: str, key: str) -> None:
        path = self._path(bucket, key)
        path.unlink(missing_ok=True)
        path.with_suffix(".json").unlink(missing_ok=True)

    def get(self, bucket: str, key: str) -> Optional[Tuple[bytes, Dict[str, Any]]]:
        path = self._path(bucket, key)
        try:
            return path.read_bytes(), json.loads(path.with_suffix(".json").read_text())
        except FileNotFoundError:
            return None

    def metadata(self, bucket: str) -> List[Dict[str, Any]]:
        """Every object's metadata (key, type, etag, meta, modified), for lifecycle sweeps."""
        found = []
        for path in (self.root / bucket).glob("*.json"):
            try:
                found.append(json.loads(path.read_text()))
            except (FileNotFoundError, ValueError):
                continue  # deleted meanwhile, or being written
        return found

    def _lifecycle_path(self, bucket: str) -> pathlib.Path:
        return self.root / f"{bucket}.lifecycle.xml"

    def lifecycle(self, bucket: str) -> Optional[str]:
        path = self._lifecycle_path(bucket)
        return path.read_text() if path.exists() else None

    def set_lifecycle(self, bucket: str, document: Optional[str]) -> None:
        path = self._lifecycle_path(bucket)
        if document is None:
            path.unlink(missing_ok=True)
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(document)


@dataclass(frozen=True)
class LifecycleRule:
    """The part of an OSS lifecycle rule the stand-in enforces: expiry (deletion) of current
    objects by prefix, ``days`` after their last modification or when modified before
    ``created_before``. Rules with tag conditions match no object (the stand-in keeps no tags)."""
    rule_id: str
    prefix: str
    enabled: bool
    days: Optional[int] = None
    created_before: Optional[float] = None
    tagged: bool = False

    def expires(self, key: str, modified: float, now: float) -> bool:
        if not self.enabled or self.tagged or not key.startswith(self.prefix):
            return False
        if self.days is not None:
            return now >= modified + self.days * 86400
        return self.created_before is not None and modified < self.created_before


MAX_LIFECYCLE_RULES = 1000


def parse_lifecycle(document: bytes) -> List[LifecycleRule]:
    """A PutBucketLifecycle body (as oss2 builds it) -> its rules; OssError for what OSS refuses."""
    import xml.etree.ElementTree as ElementTree

    def malformed(message: str = "The XML you provided was not well-formed or did not validate.") -> OssError:
        return OssError(400, "MalformedXML", message)

    try:
        root = ElementTree.fromstring(document)
    except ElementTree.ParseError:
        raise malformed()
    if root.tag != "LifecycleConfiguration":
        raise malformed()
    rules, ids = [], set()
    for node in root.findall("Rule"):
        rule_id = (node.findtext("ID") or "").strip() or uuid.uuid4().hex
        if rule_id in ids:
            raise _invalid(f"Rule ID {rule_id} is used twice.")
        ids.add(rule_id)
        status = node.findtext("Status")
        if status not in ("Enabled", "Disabled"):
            raise malformed("Status must be Enabled or Disabled.")
        days, created_before = None, None
        expiration = node.find("Expiration")
        if expiration is not None:
            if expiration.findtext("Days") is not None:
                text = expiration.findtext("Days") or ""
                if not text.isdigit() or int(text) < 1:
                    raise _invalid("Expiration Days must be a positive integer.")
                days = int(text)
            elif expiration.findtext("CreatedBeforeDate") is not None:
                try:
                    created_before = _parse_policy_time(expiration.findtext("CreatedBeforeDate") or "")
                except ValueError:
                    raise _invalid("CreatedBeforeDate must be an ISO 8601 date at midnight UTC.")
        rules.append(LifecycleRule(rule_id=rule_id, prefix=node.findtext("Prefix") or "",
                                   enabled=status == "Enabled", days=days, created_before=created_before,
                                   tagged=node.find("Tag") is not None))
    if not rules:
        raise malformed("A lifecycle configuration needs at least one rule.")
    if len(rules) > MAX_LIFECYCLE_RULES:
        raise _invalid(f"At most {MAX_LIFECYCLE_RULES} lifecycle rules.")
    return rules


class OssStandIn:
    def __init__(self, storage_dir: str, bucket: str, registry: CredentialRegistry,
                 region: str = DEFAULT_REGION, clock: Clock = time.time) -> None:
        self.bucket = bucket
        self.region = region
        self.registry = registry
        self.store = ObjectStore(pathlib.Path(storage_dir))
        self.clock = clock

    def application(self) -> web.Application:
        app = web.Application(client_max_size=MAX_OBJECT_BYTES)
        app.router.add_route("POST", "/{bucket}", self._post_object)
        app.router.add_route("POST", "/{bucket}/", self._post_object)
        app.router.add_route("OPTIONS", "/{bucket}/{key:.*}", self._preflight)
        app.router.add_route("OPTIONS", "/{bucket}", self._preflight)
        app.router.add_route("PUT", "/{bucket}/{key:.+}", self._put_object)
        app.router.add_route("GET", "/{bucket}/{key:.+}", self._get_object)
        app.router.add_route("HEAD", "/{bucket}/{key:.+}", self._get_object)
        app.router.add_route("DELETE", "/{bucket}/{key:.+}", self._delete_object)
        for method in ("GET", "PUT", "DELETE"):  # bucket sub-resources (?lifecycle)
            app.router.add_route(method, "/{bucket}/", self._bucket_resource)
            app.router.add_route(method, "/{bucket}", self._bucket_resource)
        return app

    # ---- credentials ------------------------------------------------------------------------

    def _credential(self, access_key_id: Optional[str], security_token: Optional[str]) -> Credential:
        credential = self.registry.get(access_key_id or "")
        if credential is None:
            raise OssError(403, "InvalidAccessKeyId", "The OSS Access Key Id you provided does not exist in our records.")
        if credential.security_token is not None:
            if not security_token:
                raise _denied("The security token is missing for temporary credentials.")
            if security_token != credential.security_token:
                raise OssError(403, "InvalidSecurityToken", "The security token you provided is invalid.")
            if credential.expires_at is not None and credential.expires_at <= self.clock():
                raise OssError(403, "SecurityTokenExpired", "The security token you provided has expired.")
        elif security_token:
            raise OssError(403, "InvalidSecurityToken", "The security token you provided is invalid.")
        return credential

    def _v4_scope(self, credential: Optional[str], timestamp: str) -> Dict[str, str]:
        scope = sig.parse_v4_credential(credential or "")
        if scope is None:
            raise _invalid("x-oss-credential must be <AccessKeyId>/<yyyymmdd>/<region>/oss/aliyun_v4_request.")
        if scope["region"] != self.region or scope["product"] != "oss":
            raise _denied(f"Invalid credential scope {scope['region']}/{scope['product']}: "
                          f"this endpoint is {self.region}/oss.")
        if scope["date"] != timestamp[:8]:
            raise _denied("The date in x-oss-credential is not the date of x-oss-date.")
        return scope

    def _v4_key(self, credential: Credential, scope: Dict[str, str]) -> bytes:
        return sig.v4_signing_key(credential.secret, scope["date"], scope["region"], scope["product"])

    # ---- request authentication -------------------------------------------------------------

    def _authenticate(self, request: web.Request, bucket: str, key: str) -> Credential:
        params = sig.parse_query(request.rel_url.raw_query_string)
        query = dict(params)
        headers = dict(request.headers)
        authorization = request.headers.get("Authorization", "")
        if authorization.startswith(sig.V4_ALGORITHM):
            return self._v4_header(request.method, bucket, key, params, headers, authorization)
        if authorization.startswith("OSS "):
            return self._v1_header(request.method, bucket, key, query, headers, authorization)
        if "x-oss-signature-version" in query or "x-oss-signature" in query:
            return self._v4_query(request.method, bucket, key, params, headers)
        if "Signature" in query or "OSSAccessKeyId" in query:
            return self._v1_query(request.method, bucket, key, query, headers)
        raise _denied("Anonymous access is forbidden for this operation.")

    def _v4_header(self, method: str, bucket: str, key: str, params: List[Tuple[str, str]],
                   headers: Dict[str, str], authorization: str) -> Credential:
        fields = sig.parse_v4_authorization(authorization)
        if fields is None:
            raise _invalid("The Authorization header is malformed.")
        lower = {name.lower(): value for name, value in headers.items()}
        timestamp = lower.get("x-oss-date", "")
        if abs(self.clock() - _parse_v4_time(timestamp)) > MAX_CLOCK_SKEW_SECONDS:
            raise _skewed()
        scope = self._v4_scope(fields["Credential"], timestamp)
        credential = self._credential(scope["access_key_id"], lower.get("x-oss-security-token"))
        additional = [name for name in fields.get("AdditionalHeaders", "").split(";") if name]
        canonical = sig.v4_canonical_request(method, bucket, key, params, headers, additional)
        text = sig.v4_string_to_sign(timestamp, sig.v4_scope(scope["date"], scope["region"], scope["product"]), canonical)
        if not sig.signatures_match(sig.v4_sign(self._v4_key(credential, scope), text), fields["Signature"]):
            raise _mismatch(text)
        return credential

    def _v4_query(self, method: str, bucket: str, key: str, params: List[Tuple[str, str]],
                  headers: Dict[str, str]) -> Credential:
        query = dict(params)
        if query.get("x-oss-signature-version") != sig.V4_ALGORITHM:
            raise _invalid("x-oss-signature-version must be OSS4-HMAC-SHA256.")
        expires = query.get("x-oss-expires", "")
        if not expires.isdigit() or not 0 < int(expires) <= MAX_URL_EXPIRES_SECONDS:
            raise _invalid("x-oss-expires must be a number of seconds, at most 7 days.")
        timestamp = query.get("x-oss-date", "")
        signed_at = _parse_v4_time(timestamp)
        if signed_at - self.clock() > MAX_CLOCK_SKEW_SECONDS:
            raise OssError(403, "RequestTimeTooSkewed", "x-oss-date is in the future.")
        if self.clock() > signed_at + int(expires):
            raise _denied("Request has expired.")
        scope = self._v4_scope(query.get("x-oss-credential"), timestamp)
        credential = self._credential(scope["access_key_id"], query.get("x-oss-security-token"))
        additional = [name for name in query.get("x-oss-additional-headers", "").split(";") if name]
        signed = [(name, value) for name, value in params if name != "x-oss-signature"]
        canonical = sig.v4_canonical_request(method, bucket, key, signed, headers, additional)
        text = sig.v4_string_to_sign(timestamp, sig.v4_scope(scope["date"], scope["region"], scope["product"]), canonical)
        if not sig.signatures_match(sig.v4_sign(self._v4_key(credential, scope), text), query.get("x-oss-signature")):
            raise _mismatch(text)
        return credential

    def _v1_header(self, method: str, bucket: str, key: str, query: Dict[str, str],
                   headers: Dict[str, str], authorization: str) -> Credential:
        auth = sig.parse_authorization(authorization)
        if auth is None:
            raise _invalid("The Authorization header is malformed.")
        lower = {name.lower(): value for name, value in headers.items()}
        date = lower.get("x-oss-date") or lower.get("date") or ""
        try:
            sent = parsedate_to_datetime(date).timestamp()
        except (TypeError, ValueError):
            raise _denied("The Date header is missing or invalid.")
        if abs(self.clock() - sent) > MAX_CLOCK_SKEW_SECONDS:
            raise _skewed()
        credential = self._credential(auth["access_key_id"], lower.get("x-oss-security-token"))
        text = sig.string_to_sign(method, headers, date, bucket, key, query)
        if not sig.signatures_match(sig.sign(credential.secret, text), auth["signature"]):
            raise _mismatch(text)
        return credential

    def _v1_query(self, method: str, bucket: str, key: str, query: Dict[str, str],
                  headers: Dict[str, str]) -> Credential:
        expires = query.get("Expires", "")
        if not expires.isdigit():
            raise _denied("Expires is missing or invalid.")
        if int(expires) < self.clock():
            raise _denied("Request has expired.")
        credential = self._credential(query.get("OSSAccessKeyId"), query.get("security-token"))
        text = sig.string_to_sign(method, headers, expires, bucket, key, query)
        if not sig.signatures_match(sig.sign(credential.secret, text), query.get("Signature")):
            raise _mismatch(text)
        return credential

    def _authorize(self, credential: Credential, action: str, bucket: str, key: str) -> None:
        if bucket != self.bucket:
            raise OssError(404, "NoSuchBucket", "The specified bucket does not exist.")
        if not credential.allows(action, bucket, key):
            raise _denied("You have no right to access this object because of bucket acl or policy.")

    # ---- operations -------------------------------------------------------------------------

    # ---- lifecycle ----------------------------------------------------------------------------

    def lifecycle_rules(self, bucket: Optional[str] = None) -> List[LifecycleRule]:
        document = self.store.lifecycle(bucket or self.bucket)
        return parse_lifecycle(document.encode()) if document else []

    def _expired(self, bucket: str, meta: Dict[str, Any], rules: Optional[List[LifecycleRule]] = None) -> bool:
        rules = self.lifecycle_rules(bucket) if rules is None else rules
        now = self.clock()
        return any(rule.expires(meta["key"], float(meta["modified"]), now) for rule in rules)

    def run_lifecycle(self) -> List[str]:
        """Delete every object a lifecycle rule has expired (OSS runs its rules in the background;
        the stand-in also treats an expired object as gone the moment it is asked for). Returns
        the keys deleted."""
        rules = self.lifecycle_rules()
        if not rules:
            return []
        gone = []
        for meta in self.store.metadata(self.bucket):
            if self._expired(self.bucket, meta, rules):
                self.store.delete(self.bucket, meta["key"])
                gone.append(meta["key"])
        return gone

    def _find(self, bucket: str, key: str) -> Optional[Tuple[bytes, Dict[str, Any]]]:
        """The object, unless absent or expired by a lifecycle rule (then deleted now)."""
        found = self.store.get(bucket, key)
        if found is not None and self._expired(bucket, found[1]):
            self.store.delete(bucket, key)
            return None
        return found

    async def _bucket_resource(self, request: web.Request) -> web.Response:
        """GetBucketLifecycle / PutBucketLifecycle / DeleteBucketLifecycle (``?lifecycle``)."""
        bucket = request.match_info["bucket"]
        params = dict(sig.parse_query(request.rel_url.raw_query_string))
        try:
            if "lifecycle" not in params:
                raise OssError(400, "NotImplemented", "The stand-in implements only the lifecycle bucket resource.")
            credential = self._authenticate(request, bucket, "")
            action = {"GET": "oss:GetBucketLifecycle", "PUT": "oss:PutBucketLifecycle",
                      "DELETE": "oss:DeleteBucketLifecycle"}[request.method]
            self._authorize(credential, action, bucket, "")
            if request.method == "PUT":
                body = await request.read()
                parse_lifecycle(body)  # refuse what OSS refuses before storing anything
                self.store.set_lifecycle(bucket, body.decode())
                return web.Response(status=200, headers=_cors(request))
            if request.method == "DELETE":
                self.store.set_lifecycle(bucket, None)
                return web.Response(status=204, headers=_cors(request))
            document = self.store.lifecycle(bucket)
            if document is None:
                raise OssError(404, "NoSuchLifecycle", "No Row found in Lifecycle Table.", BucketName=bucket)
            return web.Response(status=200, body=document.encode(), content_type="application/xml",
                                headers=_cors(request))
        except OssError as error:
            return error.response(_cors(request))

    # ---- objects --------------------------------------------------------------------------------

    async def _put_object(self, request: web.Request) -> web.Response:
        bucket, key = request.match_info["bucket"], request.match_info["key"]
        if "x-oss-copy-source" in request.headers:
            return await self._copy_object(request, bucket, key)
        try:
            credential = self._authenticate(request, bucket, key)
            self._authorize(credential, "oss:PutObject", bucket, key)
            self._check_overwrite(bucket, key, request.headers.get("x-oss-forbid-overwrite"))
        except OssError as error:
            return error.response(_cors(request))
        data = await request.read()
        etag = self.store.put(bucket, key, data, request.headers.get("Content-Type", "application/octet-stream"),
                              meta=_user_meta(request.headers), modified=self.clock())
        return web.Response(status=200, headers={"ETag": f'"{etag}"', **_cors(request)})

    async def _copy_object(self, request: web.Request, bucket: str, key: str) -> web.Response:
        """CopyObject: needs GetObject on the source and PutObject on the target; honours
        x-oss-forbid-overwrite, x-oss-copy-source-if-match and x-oss-metadata-directive."""
        try:
            credential = self._authenticate(request, bucket, key)
            source = urllib.parse.unquote(request.headers["x-oss-copy-source"].split("?", 1)[0])
            source_bucket, _, source_key = source.lstrip("/").partition("/")
            if not source_key:
                raise _invalid("x-oss-copy-source must be /<bucket>/<key>.")
            self._authorize(credential, "oss:GetObject", source_bucket, source_key)
            self._authorize(credential, "oss:PutObject", bucket, key)
            found = self._find(source_bucket, source_key)
            if found is None:
                raise OssError(404, "NoSuchKey", "The specified key does not exist.")
            data, meta = found
            wanted = request.headers.get("x-oss-copy-source-if-match")
            if wanted is not None and wanted.strip('" ').upper() != meta["etag"]:
                raise OssError(412, "PreconditionFailed", "At least one of the pre-conditions you specified did not hold.",
                               Condition="x-oss-copy-source-if-match")
            self._check_overwrite(bucket, key, request.headers.get("x-oss-forbid-overwrite"))
            directive = request.headers.get("x-oss-metadata-directive", "COPY").upper()
            if directive not in ("COPY", "REPLACE"):
                raise _invalid("x-oss-metadata-directive must be COPY or REPLACE.")
        except OssError as error:
            return error.response(_cors(request))
        if directive == "REPLACE":
            content_type = request.headers.get("Content-Type", "application/octet-stream")
            user_meta = _user_meta(request.headers)
        else:
            content_type, user_meta = meta["content_type"], meta.get("meta", {})
        modified = self.clock()
        etag = self.store.put(bucket, key, data, content_type, meta=user_meta, modified=modified)
        body = ('<?xml version="1.0" encoding="UTF-8"?>\n<CopyObjectResult>'
                f'<ETag>"{etag}"</ETag><LastModified>{_iso8601(modified)}</LastModified></CopyObjectResult>')
        return web.Response(status=200, body=body.encode(), content_type="application/xml",
                            headers={"ETag": f'"{etag}"', **_cors(request)})

    async def _get_object(self, request: web.Request) -> web.StreamResponse:
        bucket, key = request.match_info["bucket"], request.match_info["key"]
        try:
            credential = self._authenticate(request, bucket, key)
            self._authorize(credential, "oss:GetObject", bucket, key)
            overrides = _response_overrides(request) if request.method == "GET" else {}
            found = self._find(bucket, key)
            if found is None:
                raise OssError(404, "NoSuchKey", "The specified key does not exist.")
        except OssError as error:
            if request.method == "HEAD":  # no body; oss2 maps the status to its exception
                return web.Response(status=error.status, headers={"x-oss-request-id": "standin", **_cors(request)})
            return error.response(_cors(request))
        data, meta = found
        headers = {"ETag": f'"{meta["etag"]}"', "Content-Type": meta["content_type"],
                   "Last-Modified": formatdate(meta["modified"], usegmt=True),
                   # OSS answers object reads with nosniff: browsers keep to the stored type.
                   "X-Content-Type-Options": "nosniff",
                   **{name: value for name, value in meta.get("meta", {}).items()},
                   **overrides, **_cors(request)}
        if request.method == "HEAD":
            headers["Content-Length"] = str(len(data))
            return web.Response(status=200, headers=headers)
        return web.Response(status=200, body=data, headers=headers)

    async def _delete_object(self, request: web.Request) -> web.Response:
        bucket, key = request.match_info["bucket"], request.match_info["key"]
        try:
            credential = self._authenticate(request, bucket, key)
            self._authorize(credential, "oss:DeleteObject", bucket, key)
        except OssError as error:
            return error.response(_cors(request))
        self.store.delete(bucket, key)
        return web.Response(status=204, headers=_cors(request))

    async def _preflight(self, request: web.Request) -> web.Response:
        return web.Response(status=200, headers={
            **_cors(request),
            "Access-Control-Allow-Methods": "GET, PUT, POST, HEAD, DELETE",
            "Access-Control-Allow-Headers": request.headers.get("Access-Control-Request-Headers", "*"),
            "Access-Control-Max-Age": "600",
        })

    def _check_overwrite(self, bucket: str, key: str, forbid: Optional[str]) -> None:
        forbid = (forbid or "false").lower()
        if forbid not in ("true", "false"):
            raise _invalid("x-oss-forbid-overwrite must be true or false.")
        if forbid == "true" and self._find(bucket, key) is not None:
            raise OssError(409, "FileAlreadyExists", "The object you specified already exists and can not be overwritten.")

    async def _post_object(self, request: web.Request) -> web.Response:
        bucket = request.match_info["bucket"]
        try:
            if bucket != self.bucket:
                raise OssError(404, "NoSuchBucket", "The specified bucket does not exist.")
            fields, file_part = await _read_fields(request)
            key = fields.get("key")
            if not key:
                raise _invalid("The key field is required.")
            credential, (low, high) = self._check_post_policy(bucket, fields)
            self._authorize(credential, "oss:PutObject", bucket, key)
            self._check_overwrite(bucket, key, fields.get("x-oss-forbid-overwrite"))
            data = await _read_at_most(file_part, high)
            if len(data) < low:
                raise OssError(400, "EntityTooSmall", "Your proposed upload is smaller than the minimum allowed size.")
        except OssError as error:
            return error.response(_cors(request))
        content_type = fields.get("content-type") or file_part.headers.get("Content-Type") or "application/octet-stream"
        etag = self.store.put(bucket, key, data, content_type, meta=_user_meta(fields), modified=self.clock())
        status = fields.get("success_action_status", "204")
        status = int(status) if status in ("200", "201", "204") else 204
        headers = {"ETag": f'"{etag}"', **_cors(request)}
        if status == 201:
            body = (f'<?xml version="1.0" encoding="UTF-8"?>\n<PostResponse><Bucket>{escape(bucket)}</Bucket>'
                    f'<Location>/{escape(bucket)}/{escape(key)}</Location><Key>{escape(key)}</Key>'
                    f'<ETag>"{etag}"</ETag></PostResponse>')
            return web.Response(status=201, body=body.encode(), content_type="application/xml", headers=headers)
        return web.Response(status=status, headers=headers)

    def _check_post_policy(self, bucket: str, fields: Dict[str, str]) -> Tuple[Credential, Tuple[int, int]]:
        """Signature, credentials and every policy condition but the size; returns the size range."""
        policy_b64 = fields.get("policy")
        if not policy_b64:
            raise _denied("Anonymous access is forbidden: the policy field is required.")
        required = []
        if "x-oss-signature-version" in fields:
            if fields["x-oss-signature-version"] != sig.V4_ALGORITHM:
                raise _invalid("x-oss-signature-version must be OSS4-HMAC-SHA256.")
            timestamp = fields.get("x-oss-date", "")
            signed_at = _parse_v4_time(timestamp)
            if signed_at - self.clock() > MAX_CLOCK_SKEW_SECONDS:
                raise OssError(403, "RequestTimeTooSkewed", "x-oss-date is in the future.")
            if self.clock() - signed_at > MAX_URL_EXPIRES_SECONDS:
                raise _denied("x-oss-date is more than 7 days old.")
            scope = self._v4_scope(fields.get("x-oss-credential"), timestamp)
            credential = self._credential(scope["access_key_id"], fields.get("x-oss-security-token"))
            expected = sig.v4_sign(self._v4_key(credential, scope), policy_b64)
            given = fields.get("x-oss-signature")
            required = ["x-oss-signature-version", "x-oss-credential", "x-oss-date"]
        elif "ossaccesskeyid" in fields:
            credential = self._credential(fields["ossaccesskeyid"], fields.get("x-oss-security-token"))
            expected, given = sig.sign(credential.secret, policy_b64), fields.get("signature")
        else:
            raise _denied("Anonymous access is forbidden: no OSSAccessKeyId or x-oss-credential.")
        if not sig.signatures_match(expected, given):
            raise _mismatch(policy_b64)
        try:
            policy = json.loads(base64.b64decode(policy_b64, validate=True))
            expiration = _parse_policy_time(policy["expiration"])
            conditions = policy["conditions"]
            if not isinstance(conditions, list) or set(policy) != {"expiration", "conditions"}:
                raise TypeError
        except (ValueError, KeyError, TypeError):
            raise OssError(400, "InvalidPolicyDocument", "The policy document is malformed.")
        if expiration < self.clock():
            raise _denied("Invalid according to Policy: Policy expired.")
        if credential.security_token is not None:
            required.append("x-oss-security-token")
        named = {_condition_field(condition) for condition in conditions}
        for name in required:
            if name not in named:
                raise _denied(f"Invalid according to Policy: the policy has no condition on {name}.")
        size_range = (0, MAX_OBJECT_BYTES)
        for condition in conditions:
            if isinstance(condition, list) and condition and str(condition[0]).lower() == "content-length-range":
                try:
                    size_range = (int(condition[1]), int(condition[2]))
                except (IndexError, TypeError, ValueError):
                    raise OssError(400, "InvalidPolicyDocument", "content-length-range needs two integers.")
            else:
                _check_condition(condition, bucket, fields)
        return credential, size_range


async def _read_fields(request: web.Request) -> Tuple[Dict[str, str], BodyPartReader]:
    """The form fields before the file (names lower-cased, as OSS matches them) and the file part."""
    if not request.content_type.startswith("multipart/form-data"):
        raise _invalid("PostObject needs multipart/form-data.")
    fields: Dict[str, str] = {}
    reader = await request.multipart()
    async for part in reader:
        if not isinstance(part, BodyPartReader):
            raise _invalid("Nested multipart bodies are not supported.")
        name = (part.name or "").lower()
        if name == "file":
            return fields, part
        if len(fields) > 100:
            raise _invalid("Too many form fields.")
        fields[name] = (await part.read(decode=False))[:64 * 1024].decode("utf-8", "replace")
    raise _invalid("The file field is missing (it must be the last field).")


async def _read_at_most(part: BodyPartReader, limit: int) -> bytes:
    """The file's bytes; past ``limit`` the rest is drained unstored and the upload refused."""
    chunks, size = [], 0
    while True:
        chunk = await part.read_chunk(64 * 1024)
        if not chunk:
            break
        size += len(chunk)
        if size <= limit:
            chunks.append(chunk)
        else:
            chunks.clear()
    if size > limit:
        raise OssError(400, "EntityTooLarge", "Your proposed upload exceeds the maximum allowed size.")
    return b"".join(chunks)


def _parse_policy_time(text: str) -> float:
    for layout in ("%Y-%m-%dT%H:%M:%S.%fZ", "%Y-%m-%dT%H:%M:%SZ"):
        try:
            return datetime.strptime(text, layout).replace(tzinfo=timezone.utc).timestamp()
        except ValueError:
            continue
    raise ValueError(text)


def _condition_field(condition: Any) -> Optional[str]:
    if isinstance(condition, dict) and len(condition) == 1:
        return next(iter(condition)).lower()
    if isinstance(condition, list) and len(condition) == 3 and isinstance(condition[1], str):
        return condition[1].lstrip("$").lower()
    return None


_OPERATORS = ("eq", "starts-with", "in", "not-in")


def _check_condition(condition: Any, bucket: str, fields: Dict[str, str]) -> None:
    if isinstance(condition, dict):
        operator, items = "eq", list(condition.items())
    elif isinstance(condition, list) and len(condition) == 3 and isinstance(condition[1], str):
        operator, items = str(condition[0]).lower(), [(condition[1], condition[2])]
    else:
        raise OssError(400, "InvalidPolicyDocument", "A policy condition is malformed.")
    if operator not in _OPERATORS or (operator in ("in", "not-in")) != isinstance(items[0][1], list):
        raise OssError(400, "InvalidPolicyDocument", f"Unsupported policy condition: {json.dumps(condition)}")
    for name, value in items:
        name = name.lstrip("$").lower()
        actual = bucket if name == "bucket" else fields.get(name)
        if operator == "eq" and actual == value:
            continue
        if operator == "starts-with" and actual is not None and isinstance(value, str) and actual.startswith(value):
            continue
        if operator == "in" and isinstance(value, list) and actual in value:
            continue
        if operator == "not-in" and isinstance(value, list) and actual not in value:
            continue
        raise _denied(f"Invalid according to Policy: Policy Condition failed: {json.dumps(condition)}")


def _user_meta(headers: Any) -> Dict[str, str]:
    """x-oss-meta-* headers (or PostObject form fields): the object's user metadata, names
    lower-cased as OSS returns them."""
    return {name.lower(): value for name, value in headers.items() if name.lower().startswith("x-oss-meta-")}


# GetObject's response-* query parameters and the headers they set. OSS honours them only in
# signed requests (anonymous ones are refused; the stand-in refuses every anonymous read anyway),
# and refuses response-content-type on GET outright, for security (Aliyun error 0017-00000902,
# "Can not override response header on content-type"): a download's type is the stored one.
_OVERRIDES = {
    "response-content-disposition": "Content-Disposition",
    "response-content-language": "Content-Language",
    "response-cache-control": "Cache-Control",
    "response-content-encoding": "Content-Encoding",
    "response-expires": "Expires",
}


def _response_overrides(request: web.Request) -> Dict[str, str]:
    params = dict(sig.parse_query(request.rel_url.raw_query_string))
    if "response-content-type" in params:
        raise OssError(400, "InvalidRequest", "Can not override response header on content-type",
                       EC="0017-00000902")
    headers = {}
    for name, header in _OVERRIDES.items():
        if name in params:
            value = params[name]
            if any(ord(c) < 32 or ord(c) > 126 for c in value):
                raise _invalid(f"{name} must be printable ASCII (percent-encode a file name).")
            headers[header] = value
    return headers


def _iso8601(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.000Z")


def _cors(request: web.Request) -> Dict[str, str]:
    origin = request.headers.get("Origin")
    if not origin:
        return {}
    return {"Access-Control-Allow-Origin": origin, "Access-Control-Expose-Headers": "ETag, x-oss-request-id"}


def make_oss_app(storage_dir: str, bucket: str, credentials: CredentialRegistry, *,
                 region: str = DEFAULT_REGION, clock: Clock = time.time) -> web.Application:
    """The OSS stand-in as an aiohttp app; ``credentials`` is shared with the STS stand-in."""
    return OssStandIn(storage_dir, bucket, credentials, region=region, clock=clock).application()


@dataclass
class RunningStandIns:
    oss_endpoint: str
    sts_endpoint: str
    registry: CredentialRegistry
    oss: OssStandIn
    sts: Any  # local.sts_standin.StsStandIn
    _loop: asyncio.AbstractEventLoop
    _runners: List[web.AppRunner]
    _thread: threading.Thread

    def stop(self) -> None:
        async def shutdown() -> None:
            for task in asyncio.all_tasks():
                if task is not asyncio.current_task():
                    task.cancel()
            for runner in self._runners:
                await runner.cleanup()

        asyncio.run_coroutine_threadsafe(shutdown(), self._loop).result(timeout=10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)


def start_standins(host: str, storage_dir: str, bucket: str, access_key_id: str, access_key_secret: str,
                   oss_port: int = 0, sts_port: int = 0, clock: Clock = time.time,
                   region: str = DEFAULT_REGION, lifecycle_interval: float = 600) -> RunningStandIns:
    """Run the OSS and STS stand-ins in a background thread; returns once both listen.

    ``access_key_id``/``access_key_secret`` are the account's long-term key, the one the app
    signs AssumeRole with; ``region`` must be the app's KEFU_OSS_REGION (it is in V4 scopes).
    Every ``lifecycle_interval`` seconds the bucket's lifecycle rules delete what they expire
    (and an expired object is gone for every request at once).
    """
    from local.sts_standin import StsStandIn

    registry = CredentialRegistry()
    registry.add(Credential(access_key_id, access_key_secret))
    oss = OssStandIn(storage_dir, bucket, registry, region=region, clock=clock)
    sts = StsStandIn(registry, clock=clock)
    loop = asyncio.new_event_loop()
    started: Dict[str, Any] = {}
    ready = threading.Event()

    async def serve() -> None:
        runners = []
        for name, app, port in (("oss", oss.application(), oss_port), ("sts", sts.application(), sts_port)):
            runner = web.AppRunner(app, access_log=None)
            await runner.setup()
            site = web.TCPSite(runner, host, port)
            await site.start()
            port_bound = runner.addresses[0][1]
            started[name] = f"http://[{host}]:{port_bound}" if ":" in host else f"http://{host}:{port_bound}"
            runners.append(runner)
        started["runners"] = runners
        started["sweeper"] = asyncio.ensure_future(sweep_lifecycle())

    async def sweep_lifecycle() -> None:
        while True:
            await asyncio.sleep(lifecycle_interval)
            try:
                await asyncio.get_running_loop().run_in_executor(None, oss.run_lifecycle)
            except Exception:  # a malformed stored rule must not stop the stand-in
                pass

    def run() -> None:
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(serve())
        finally:
            ready.set()
        loop.run_forever()
        loop.close()

    thread = threading.Thread(target=run, name="oss-sts-standins", daemon=True)
    thread.start()
    if not ready.wait(30) or "runners" not in started:
        raise RuntimeError("the OSS/STS stand-ins did not start")
    return RunningStandIns(started["oss"], started["sts"], registry, oss, sts, loop, started["runners"], thread)
