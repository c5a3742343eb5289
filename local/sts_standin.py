"""A local Aliyun STS that answers AssumeRole as the aliyun SDK calls it (RPC, signature v1.0).

It checks the caller's HMAC-SHA1 signature with the account's long-term key and issues temporary
credentials, bound to the request's session policy, that the OSS stand-in then accepts.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
import urllib.parse
import uuid
from datetime import datetime, timezone
from typing import Callable, Dict, Set

from aiohttp import web

from local.credentials import Credential, CredentialRegistry

MIN_DURATION, MAX_DURATION = 900, 3600
MAX_CLOCK_SKEW_SECONDS = 15 * 60


def percent_encode(value: str) -> str:
    return urllib.parse.quote(value, safe="~")


def rpc_string_to_sign(method: str, params: Dict[str, str]) -> str:
    canonical = "&".join(f"{percent_encode(k)}={percent_encode(v)}"
                         for k, v in sorted(params.items()) if k != "Signature")
    return f"{method.upper()}&{percent_encode('/')}&{percent_encode(canonical)}"


def rpc_signature(secret: str, method: str, params: Dict[str, str]) -> str:
    digest = hmac.new(f"{secret}&".encode(), rpc_string_to_sign(method, params).encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode()


class StsError(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message

    def response(self) -> web.Response:
        return web.json_response({"RequestId": str(uuid.uuid4()).upper(), "HostId": "sts-standin",
                                  "Code": self.code, "Message": self.message}, status=self.status)


class StsStandIn:
    def __init__(self, registry: CredentialRegistry, clock: Callable[[], float] = time.time) -> None:
        self.registry = registry
        self.clock = clock
        self.calls = 0  # AssumeRole calls answered, for tests of credential caching
        self._nonces: Set[str] = set()

    def application(self) -> web.Application:
        app = web.Application()
        app.router.add_route("*", "/", self._handle)
        return app

    async def _handle(self, request: web.Request) -> web.Response:
        params = dict(request.query)
        if request.method == "POST":
            params.update({k: str(v) for k, v in (await request.post()).items()})
        try:
            caller = self._verify(request.method, params)
            if params.get("Action") != "AssumeRole":
                raise StsError(400, "InvalidAction.NotFound", "Specified api is not found.")
            return web.json_response(self._assume_role(caller, params))
        except StsError as error:
            return error.response()

    def _verify(self, method: str, params: Dict[str, str]) -> Credential:
        caller = self.registry.get(params.get("AccessKeyId", ""))
        if caller is None or caller.security_token is not None:
            raise StsError(404, "InvalidAccessKeyId.NotFound", "Specified access key is not found.")
        if params.get("SignatureMethod") != "HMAC-SHA1" or "Signature" not in params:
            raise StsError(400, "IncompleteSignature", "The request signature does not conform to Aliyun standards.")
        if not hmac.compare_digest(rpc_signature(caller.secret, method, params), params["Signature"]):
            # STS's own wording: the SDK compares the string to sign to tell a wrong secret apart
            raise StsError(400, "SignatureDoesNotMatch", "Specified signature is not matched with our calculation. "
                           f"server string to sign is:{rpc_string_to_sign(method, params)}")
        try:
            sent = datetime.strptime(params.get("Timestamp", ""), "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc)
        except ValueError:
            raise StsError(400, "MissingTimestamp", "Timestamp is mandatory for this action.")
        if abs(sent.timestamp() - self.clock()) > MAX_CLOCK_SKEW_SECONDS:
            raise StsError(400, "InvalidTimeStamp.Expired", "Specified time stamp or date value is expired.")
        nonce = params.get("SignatureNonce", "")
        if not nonce or nonce in self._nonces:  # a replayed request
            raise StsError(400, "SignatureNonceUsed", "Specified signature nonce was used already.")
        self._nonces.add(nonce)
        return caller

    def _assume_role(self, caller: Credential, params: Dict[str, str]) -> Dict[str, object]:
        role_arn, session_name = params.get("RoleArn"), params.get("RoleSessionName")
        if not role_arn or not session_name:
            raise StsError(400, "MissingParameter", "RoleArn and RoleSessionName are required.")
        try:
            duration = int(params.get("DurationSeconds", "3600"))
        except ValueError:
            raise StsError(400, "InvalidParameter.DurationSeconds", "DurationSeconds is not a number.")
        if not MIN_DURATION <= duration <= MAX_DURATION:
            raise StsError(400, "InvalidParameter.DurationSeconds",
                           f"DurationSeconds must be between {MIN_DURATION} and {MAX_DURATION}.")
        policy = None
        if params.get("Policy"):
            try:
                policy = json.loads(params["Policy"])
            except ValueError:
                raise StsError(400, "InvalidParameter.PolicyGrammar", "The policy is not valid JSON.")
        expires_at = int(self.clock()) + duration
        credential = Credential(
            access_key_id="STS." + secrets.token_hex(12),
            secret=secrets.token_urlsafe(30),
            security_token="CAIS" + secrets.token_urlsafe(120),
            expires_at=expires_at,
            policy=policy or {"Statement": [{"Effect": "Allow", "Action": ["oss:*"], "Resource": ["*"]}]},
        )
        self.registry.add(credential)
        self.calls += 1
        return {
            "RequestId": str(uuid.uuid4()).upper(),
            "AssumedRoleUser": {"Arn": f"{role_arn}/{session_name}", "AssumedRoleId": f"3{secrets.token_hex(8)}:{session_name}"},
            "Credentials": {
                "AccessKeyId": credential.access_key_id,
                "AccessKeySecret": credential.secret,
                "SecurityToken": credential.security_token,
                "Expiration": datetime.fromtimestamp(expires_at, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
            },
        }


def make_sts_app(credentials: CredentialRegistry, *, clock: Callable[[], float] = time.time) -> web.Application:
    """The STS stand-in as an aiohttp app; ``credentials`` holds the long-term key it trusts and
    receives the temporary credentials it issues (share it with the OSS stand-in)."""
    return StsStandIn(credentials, clock=clock).application()
