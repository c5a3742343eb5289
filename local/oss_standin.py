"""A local Aliyun OSS that checks signatures as OSS does, and keeps objects on disk.

Path-style addressing (``/{bucket}/{key}``), which oss2 uses for an IP endpoint. Verifies OSS
signature V1 in the Authorization header, in signed URLs and in PostObject forms: the signature,
expiry, the STS security token, the signed headers, the PostObject policy conditions
(``content-length-range`` included) and the STS session policy's key prefix. Errors come back as
OSS's XML with OSS's codes and statuses, so oss2 raises what it would raise against OSS.
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
from typing import Any, Dict, List, Optional, Tuple

from aiohttp import web

from local import oss_signing
from local.credentials import Credential, CredentialRegistry

MAX_CLOCK_SKEW_SECONDS = 15 * 60


class OssError(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message

    def response(self) -> web.Response:
        request_id = uuid.uuid4().hex[:24].upper()
        body = ('<?xml version="1.0" encoding="UTF-8"?>\n<Error>\n'
                f"  <Code>{self.code}</Code>\n  <Message>{self.message}</Message>\n"
                f"  <RequestId>{request_id}</RequestId>\n  <HostId>oss-standin</HostId>\n</Error>\n")
        return web.Response(status=self.status, body=body.encode(), content_type="application/xml",
                            headers={"x-oss-request-id": request_id})


def _denied(message: str) -> OssError:
    return OssError(403, "AccessDenied", message)


@dataclass
class ObjectStore:
    root: pathlib.Path

    def _path(self, bucket: str, key: str) -> pathlib.Path:
        digest = hashlib.sha256(f"{bucket}/{key}".encode()).hexdigest()
        return self.root / bucket / digest

    def put(self, bucket: str, key: str, data: bytes, content_type: str) -> str:
        path = self._path(bucket, key)
        path.parent.mkdir(parents=True, exist_ok=True)
        etag = hashlib.md5(data).hexdigest().upper()
        tmp = path.with_suffix(".tmp")
        tmp.write_bytes(data)
        tmp.replace(path)
        path.with_suffix(".json").write_text(json.dumps({"key": key, "content_type": content_type,
                                                         "etag": etag, "modified": time.time()}))
        return etag

    def get(self, bucket: str, key: str) -> Optional[Tuple[bytes, Dict[str, Any]]]:
        path = self._path(bucket, key)
        if not path.exists():
            return None
        return path.read_bytes(), json.loads(path.with_suffix(".json").read_text())


class OssStandIn:
    def __init__(self, storage_dir: str, bucket: str, registry: CredentialRegistry,
                 clock=time.time) -> None:
        self.bucket = bucket
        self.registry = registry
        self.store = ObjectStore(pathlib.Path(storage_dir))
        self.clock = clock

    def application(self) -> web.Application:
        app = web.Application(client_max_size=1024 ** 3)
        app.router.add_route("POST", "/{bucket}", self._post_object)
        app.router.add_route("POST", "/{bucket}/", self._post_object)
        app.router.add_route("OPTIONS", "/{bucket}/{key:.*}", self._preflight)
        app.router.add_route("OPTIONS", "/{bucket}", self._preflight)
        app.router.add_route("PUT", "/{bucket}/{key:.+}", self._put_object)
        app.router.add_route("GET", "/{bucket}/{key:.+}", self._get_object)
        app.router.add_route("HEAD", "/{bucket}/{key:.+}", self._get_object)
        return app

    # ---- authentication ---------------------------------------------------------------------

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

    def _authenticate(self, request: web.Request, bucket: str, key: str) -> Credential:
        params = {name: value for name, value in request.query.items()}
        headers = {name: value for name, value in request.headers.items()}
        auth = oss_signing.parse_authorization(request.headers.get("Authorization"))
        if auth is not None:
            date = request.headers.get("x-oss-date") or request.headers.get("Date") or ""
            try:
                sent = parsedate_to_datetime(date).timestamp()
            except (TypeError, ValueError):
                raise _denied("The Date header is missing or invalid.")
            if abs(self.clock() - sent) > MAX_CLOCK_SKEW_SECONDS:
                raise OssError(403, "RequestTimeTooSkewed", "The difference between the request time and the current time is too large.")
            credential = self._credential(auth["access_key_id"], request.headers.get("x-oss-security-token"))
            text = oss_signing.string_to_sign(request.method, headers, date, bucket, key, params)
            given = auth["signature"]
        elif "Signature" in params:
            expires = params.get("Expires", "")
            if not expires.isdigit():
                raise _denied("Expires is missing or invalid.")
            if int(expires) < self.clock():
                raise _denied("Request has expired.")
            credential = self._credential(params.get("OSSAccessKeyId"), params.get("security-token"))
            text = oss_signing.string_to_sign(request.method, headers, expires, bucket, key, params)
            given = params["Signature"]
        else:
            raise _denied("Anonymous access is forbidden for this operation.")
        if not oss_signing.signatures_match(oss_signing.sign(credential.secret, text), given):
            raise OssError(403, "SignatureDoesNotMatch",
                           "The request signature we calculated does not match the signature you provided.")
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
        except OssError as error:
            return error.response()
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
            if request.method == "HEAD":
                return web.Response(status=error.status, headers={"x-oss-request-id": "standin"})
            return error.response()
        data, meta = found
        headers = {"ETag": f'"{meta["etag"]}"', "Content-Type": meta["content_type"],
                   "Last-Modified": formatdate(meta["modified"], usegmt=True), **_cors(request)}
        if request.method == "HEAD":
            headers["Content-Length"] = str(len(data))
            return web.Response(status=200, headers=headers)
        return web.Response(status=200, body=data, headers=headers)

    async def _preflight(self, request: web.Request) -> web.Response:
        return web.Response(status=200, headers={
            **_cors(request),
            "Access-Control-Allow-Methods": "GET, PUT, POST, HEAD",
            "Access-Control-Allow-Headers": request.headers.get("Access-Control-Request-Headers", "*"),
            "Access-Control-Max-Age": "600",
        })

    async def _post_object(self, request: web.Request) -> web.Response:
        bucket = request.match_info["bucket"]
        try:
            fields, data = await self._read_form(request)
            key = fields.get("key")
            if not key:
                raise OssError(400, "InvalidArgument", "The key field is required.")
            credential = self._check_post_policy(bucket, fields, len(data))
            self._authorize(credential, "oss:PutObject", bucket, key)
        except OssError as error:
            response = error.response()
            response.headers.update(_cors(request))
            return response
        etag = self.store.put(bucket, key, data, fields.get("content-type", "application/octet-stream"))
        status = int(fields.get("success_action_status", "204"))
        status = status if status in (200, 201, 204) else 204
        headers = {"ETag": f'"{etag}"', **_cors(request)}
        if status == 201:
            body = (f'<?xml version="1.0" encoding="UTF-8"?>\n<PostResponse><Bucket>{bucket}</Bucket>'
                    f'<Location>/{bucket}/{key}</Location><Key>{key}</Key><ETag>"{etag}"</ETag></PostResponse>')
            return web.Response(status=201, body=body.encode(), content_type="application/xml", headers=headers)
        return web.Response(status=status, headers=headers)

    async def _read_form(self, request: web.Request) -> Tuple[Dict[str, str], bytes]:
        """Form fields (names lower-cased, as OSS matches them) and the file, which comes last."""
        if not request.content_type.startswith("multipart/form-data"):
            raise OssError(400, "InvalidArgument", "PostObject needs multipart/form-data.")
        fields: Dict[str, str] = {}
        reader = await request.multipart()
        async for part in reader:
            name = (part.name or "").lower()
            if name == "file":
                if part.headers.get("Content-Type") and "content-type" not in fields:
                    fields["content-type"] = part.headers["Content-Type"]
                return fields, await part.read()
            fields[name] = (await part.read()).decode()
        raise OssError(400, "InvalidArgument", "The file field is missing.")

    def _check_post_policy(self, bucket: str, fields: Dict[str, str], size: int) -> Credential:
        policy_b64 = fields.get("policy")
        if not policy_b64:
            raise _denied("The policy field is required for an authenticated PostObject.")
        credential = self._credential(fields.get("ossaccesskeyid"), fields.get("x-oss-security-token"))
        # a PostObject signature is the V1 HMAC-SHA1 of the base64 policy itself
        if not oss_signing.signatures_match(oss_signing.sign(credential.secret, policy_b64), fields.get("signature")):
            raise OssError(403, "SignatureDoesNotMatch",
                           "The request signature we calculated does not match the signature you provided.")
        try:
            policy = json.loads(base64.b64decode(policy_b64))
            expiration = datetime.strptime(policy["expiration"], "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=timezone.utc)
        except (ValueError, KeyError, TypeError):
            raise OssError(400, "InvalidPolicyDocument", "The policy document is malformed.")
        if expiration.timestamp() < self.clock():
            raise _denied("Invalid according to Policy: Policy expired.")
        for condition in policy.get("conditions", []):
            _check_condition(condition, bucket, fields, size)
        return credential


def _field(fields: Dict[str, str], name: str) -> Optional[str]:
    return fields.get(name.lstrip("$").lower())


def _check_condition(condition: Any, bucket: str, fields: Dict[str, str], size: int) -> None:
    if isinstance(condition, dict):
        for name, value in condition.items():
            actual = bucket if name.lower() == "bucket" else _field(fields, name)
            if actual != value:
                raise _denied(f"Invalid according to Policy: Policy Condition failed: [\"eq\", \"${name}\", \"{value}\"]")
        return
    if not isinstance(condition, list) or not condition:
        raise OssError(400, "InvalidPolicyDocument", "A policy condition is malformed.")
    operator = str(condition[0]).lower()
    if operator == "content-length-range":
        low, high = int(condition[1]), int(condition[2])
        if size > high:
            raise OssError(400, "EntityTooLarge", "Your proposed upload exceeds the maximum allowed size.")
        if size < low:
            raise OssError(400, "EntityTooSmall", "Your proposed upload is smaller than the minimum allowed size.")
        return
    name, value = condition[1], condition[2]
    actual = bucket if name.lstrip("$").lower() == "bucket" else _field(fields, name)
    if operator == "eq" and actual == value:
        return
    if operator == "starts-with" and actual is not None and actual.startswith(value):
        return
    if operator == "in" and isinstance(value, list) and actual in value:
        return
    raise _denied(f"Invalid according to Policy: Policy Condition failed: {json.dumps(condition)}")


def _cors(request: web.Request) -> Dict[str, str]:
    origin = request.headers.get("Origin")
    if not origin:
        return {}
    return {"Access-Control-Allow-Origin": origin, "Access-Control-Expose-Headers": "ETag, x-oss-request-id"}


@dataclass
class RunningStandIns:
    oss_endpoint: str
    sts_endpoint: str
    registry: CredentialRegistry
    oss: OssStandIn
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
                   oss_port: int = 0, sts_port: int = 0, clock=time.time) -> RunningStandIns:
    """Run the OSS and STS stand-ins in a background thread; returns once both listen."""
    from local.sts_standin import StsStandIn

    registry = CredentialRegistry()
    registry.add(Credential(access_key_id, access_key_secret))
    oss = OssStandIn(storage_dir, bucket, registry, clock=clock)
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
            started[name] = f"http://{host}:{site._server.sockets[0].getsockname()[1]}"
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
    return RunningStandIns(started["oss"], started["sts"], registry, oss, loop, started["runners"], thread)
