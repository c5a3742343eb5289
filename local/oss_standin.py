"""A local Aliyun OSS that checks signatures as OSS does, and keeps objects on disk.

Path-style addressing (``/{bucket}/{key}``), which oss2 uses for an IP or localhost endpoint.
Verifies OSS signatures V4 (OSS4-HMAC-SHA256) and V1 (HMAC-SHA1) in the Authorization header, in
signed URLs and in PostObject forms: the signature, the credential scope (date, region, product),
expiry, the STS security token, the signed headers, the PostObject policy conditions
(``content-length-range`` included, enforced while the body streams in) and the STS session
policy (action and key prefix). Errors come back as OSS's XML with OSS's codes and statuses, so
oss2 raises what it would raise against OSS.
"""
from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import pathlib
import threading
import time
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

    def put(self, bucket: str, key: str, data: bytes, content_type: str) -> str:
        path = self._path(bucket, key)
        path.parent.mkdir(parents=True, exist_ok=True)
        etag = hashlib.md5(data).hexdigest().upper()
        path.with_suffix(".json").write_text(json.dumps({"key": key, "content_type": content_type,
                                                         "etag": etag, "modified": time.time()}))
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
        if not path.exists():
            return None
        return path.read_bytes(), json.loads(path.with_suffix(".json").read_text())


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

    async def _put_object(self, request: web.Request) -> web.Response:
        bucket, key = request.match_info["bucket"], request.match_info["key"]
        try:
            credential = self._authenticate(request, bucket, key)
            self._authorize(credential, "oss:PutObject", bucket, key)
            self._check_overwrite(bucket, key, request.headers.get("x-oss-forbid-overwrite"))
        except OssError as error:
            return error.response(_cors(request))
        data = await request.read()
        etag = self.store.put(bucket, key, data, request.headers.get("Content-Type", "application/octet-stream"))
        return web.Response(status=200, headers={"ETag": f'"{etag}"', **_cors(request)})

    async def _get_object(self, request: web.Request) -> web.StreamResponse:
        bucket, key = request.match_info["bucket"], request.match_info["key"]
        try:
            credential = self._authenticate(request, bucket, key)
            self._authorize(credential, "oss:GetObject", bucket, key)
            found = self.store.get(bucket, key)
            if found is None:
                raise OssError(404, "NoSuchKey", "The specified key does not exist.")
        except OssError as error:
            if request.method == "HEAD":  # no body; oss2 maps the status to its exception
                return web.Response(status=error.status, headers={"x-oss-request-id": "standin", **_cors(request)})
            return error.response(_cors(request))
        data, meta = found
        headers = {"ETag": f'"{meta["etag"]}"', "Content-Type": meta["content_type"],
                   "Last-Modified": formatdate(meta["modified"], usegmt=True), **_cors(request)}
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
        if forbid == "true" and self.store.exists(bucket, key):
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
        etag = self.store.put(bucket, key, data, content_type)
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
            for runner in self._runners:
                await runner.cleanup()

        asyncio.run_coroutine_threadsafe(shutdown(), self._loop).result(timeout=10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)


def start_standins(host: str, storage_dir: str, bucket: str, access_key_id: str, access_key_secret: str,
                   oss_port: int = 0, sts_port: int = 0, clock: Clock = time.time,
                   region: str = DEFAULT_REGION) -> RunningStandIns:
    """Run the OSS and STS stand-ins in a background thread; returns once both listen.

    ``access_key_id``/``access_key_secret`` are the account's long-term key, the one the app
    signs AssumeRole with; ``region`` must be the app's KEFU_OSS_REGION (it is in V4 scopes).
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
