"""API Gateway's REST API in front of Lambda proxy integrations, as the local stack serves it.

What API Gateway does between a client and the function, and nothing of how functions run
(``invoke(function_name, event)`` runs one; it raises when the function fails, with Lambda's
errorMessage as ``str(exception)``):
- routing by resource paths with ``{param}`` and greedy ``{proxy+}`` segments (literal segments
  win over parameters, parameters over greedy ones) and an ``ANY`` method; anything else is
  403 ``{"message":"Missing Authentication Token"}``;
- the Lambda proxy event, field by field (path and pathParameters keep their percent-encoding,
  the query is decoded, single-value maps hold the last value, empty maps are null);
- Lambda authorizers, TOKEN and REQUEST: a missing identity source is 401 without invoking; the
  function failing with "Unauthorized" is 401, any other failure or a malformed answer 500; the
  policy is evaluated against the method ARN (a Deny or no Allow is 403); answers are cached by
  identity for the authorizer's ttl;
- ``api_key_required``: the ``x-api-key`` header must be one of the configured keys, else 403;
- CORS preflight: OPTIONS on a resource with a CORS configuration and no OPTIONS method of its
  own is answered by the gateway (a mock integration), never reaching the function;
- payloads over 10 MB are 413, the 29 s integration timeout is 504, a failed or malformed
  function answer is 502;
- the response: headers and multiValueHeaders merged, application/json when the function sets
  no Content-Type, and a base64 body decoded only when the request's first Accept type is one of
  the binary media types (otherwise the client gets the base64 text, as from AWS).
"""
from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import logging
import os
import re
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Awaitable, Callable, Dict, Iterable, List, Optional, Tuple

from aiohttp import web
from multidict import CIMultiDict

from local.functions import Authorizer, Deployment, RestRoute

log = logging.getLogger("local.rest_api")

Invoke = Callable[[str, Dict[str, Any]], Awaitable[Dict[str, Any]]]

MAX_PAYLOAD_BYTES = 10 * 1024 * 1024
INTEGRATION_TIMEOUT_S = 29.0
REST_API_ID = "localrest1"
REGION = "us-east-1"
ACCOUNT_ID = "000000000000"
REQUEST_TIME_FORMAT = "%d/%b/%Y:%H:%M:%S +0000"
# headers API Gateway computes itself rather than take from the integration's answer
HOP_BY_HOP = {"content-length", "transfer-encoding", "connection"}


class GatewayError(Exception):
    """An answer API Gateway gives on its own, never reaching the integration."""

    def __init__(self, status: int, error_type: str, body: Any) -> None:
        super().__init__(f"{status} {error_type}")
        self.status = status
        self.error_type = error_type
        self.body = body

    def response(self, request_id: str) -> web.Response:
        return web.Response(status=self.status, body=json.dumps(self.body, separators=(",", ":")).encode(),
                            content_type="application/json",
                            headers={"x-amzn-RequestId": request_id, "x-amzn-ErrorType": self.error_type})


def missing_authentication_token() -> GatewayError:
    return GatewayError(403, "MissingAuthenticationTokenException", {"message": "Missing Authentication Token"})


def incomplete_signature(authorization: str) -> GatewayError:
    """An unknown route with an Authorization header: AWS reads the header as a SigV4 attempt."""
    message = ("Authorization header requires 'Credential' parameter. Authorization header requires "
               "'Signature' parameter. Authorization header requires 'SignedHeaders' parameter. "
               "Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header. "
               f"Authorization={authorization}")
    return GatewayError(403, "IncompleteSignatureException", {"message": message})


UNAUTHORIZED = GatewayError(401, "UnauthorizedException", {"message": "Unauthorized"})
AUTHORIZER_FAILED = GatewayError(500, "AuthorizerConfigurationException", {"message": None})
IMPLICIT_DENY = GatewayError(403, "AccessDeniedException", {"Message": "User is not authorized to access this resource"})
EXPLICIT_DENY = GatewayError(403, "AccessDeniedException",
                             {"Message": "User is not authorized to access this resource with an explicit deny"})
FORBIDDEN = GatewayError(403, "ForbiddenException", {"message": "Forbidden"})
TOO_LARGE = GatewayError(413, "RequestTooLargeException", {"message": "Request Too Long"})
TIMED_OUT = GatewayError(504, "InternalServerErrorException", {"message": "Endpoint request timed out"})
INTEGRATION_FAILED = GatewayError(502, "InternalServerErrorException", {"message": "Internal server error"})


@dataclass(frozen=True)
class _Resource:
    path: str
    segments: Tuple[str, ...]
    methods: Dict[str, RestRoute]

    def match(self, parts: List[str]) -> Optional[Tuple[Tuple[int, ...], Dict[str, str]]]:
        """(rank, path parameters) when the request path matches; a lower rank is more specific."""
        rank: List[int] = []
        params: Dict[str, str] = {}
        for index, segment in enumerate(self.segments):
            if segment.startswith("{") and segment.endswith("+}"):
                if index >= len(parts):
                    return None  # a greedy parameter takes at least one segment
                params[segment[1:-2]] = "/".join(parts[index:])
                return tuple(rank + [2]), params
            if index >= len(parts):
                return None
            if segment.startswith("{") and segment.endswith("}"):
                params[segment[1:-1]] = parts[index]
                rank.append(1)
            elif segment == parts[index]:
                rank.append(0)
            else:
                return None
        return (tuple(rank), params) if len(parts) == len(self.segments) else None


def _segments(path: str) -> List[str]:
    stripped = path.strip("/")
    return stripped.split("/") if stripped else []


class _Routes:
    def __init__(self, routes: Iterable[RestRoute]) -> None:
        by_path: Dict[str, Dict[str, RestRoute]] = {}
        for route in routes:
            by_path.setdefault(route.path, {})[route.method.upper()] = route
        self._resources = [_Resource(path, tuple(_segments(path)), methods) for path, methods in by_path.items()]

    def match(self, path: str) -> Optional[Tuple[_Resource, Dict[str, str]]]:
        parts = _segments(path)
        best: Optional[Tuple[Tuple[int, ...], _Resource, Dict[str, str]]] = None
        for resource in self._resources:
            found = resource.match(parts)
            if found is not None and (best is None or found[0] < best[0]):
                best = (found[0], resource, found[1])
        return (best[1], best[2]) if best is not None else None


def _media_types(header: str) -> List[str]:
    return [part.split(";")[0].strip().lower() for part in header.split(",") if part.strip()]


def _matches_media_type(media_type: str, patterns: Iterable[str]) -> bool:
    """API Gateway's binaryMediaTypes test: a pattern may use ``*`` (``image/*``, ``*/*``)."""
    for pattern in patterns:
        regex = re.escape(pattern.lower()).replace(r"\*", "[^/]*" if pattern != "*/*" else ".*")
        if media_type and re.fullmatch(regex, media_type):
            return True
    return False


def _glob(pattern: str, value: str) -> bool:
    """IAM resource matching: ``*`` any characters, ``?`` one."""
    regex = re.escape(pattern).replace(r"\*", ".*").replace(r"\?", ".")
    return re.fullmatch(regex, value) is not None


def _as_list(value: Any) -> List[Any]:
    return value if isinstance(value, list) else [value]


def _policy_decision(policy: Any, method_arn: str) -> Optional[GatewayError]:
    """None when the policy allows ``execute-api:Invoke`` on the method, else the 403 AWS gives."""
    allowed = False
    for statement in _as_list(policy.get("Statement", [])):
        actions = _as_list(statement.get("Action", []))
        if not any(_glob(action, "execute-api:Invoke") for action in actions if isinstance(action, str)):
            continue
        resources = [r for r in _as_list(statement.get("Resource", [])) if isinstance(r, str)]
        if not any(_glob(resource, method_arn) for resource in resources):
            continue
        if statement.get("Effect") == "Deny":
            return EXPLICIT_DENY
        if statement.get("Effect") == "Allow":
            allowed = True
    return None if allowed else IMPLICIT_DENY


def _context_value(value: Any) -> str:
    """REST APIs hand the integration every authorizer context value as a string."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float, str)):
        return str(value)
    raise ValueError(f"authorizer context values must be strings, numbers or booleans, not {type(value).__name__}")


class RestApi:
    """One deployed REST API stage: ``await handle(request, path)`` answers a request whose path
    below the stage is ``path`` (raw, percent-encoded as received, without the query)."""

    def __init__(self, deployment: Deployment, invoke: Invoke, api_keys: Iterable[str] = (), *,
                 integration_timeout: float = INTEGRATION_TIMEOUT_S,
                 max_payload_bytes: int = MAX_PAYLOAD_BYTES, api_id: str = REST_API_ID,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.deployment = deployment
        self._invoke = invoke
        self._api_keys = {key: "key" + hashlib.sha256(key.encode()).hexdigest()[:7] for key in api_keys}
        self.integration_timeout = integration_timeout
        self.max_payload_bytes = max_payload_bytes
        self.api_id = api_id
        self._clock = clock
        self._routes = _Routes(deployment.rest_routes)
        self._auth_cache: Dict[Tuple[str, Tuple[str, ...]], Tuple[float, Dict[str, Any]]] = {}

    async def handle(self, request: web.Request, path: str) -> web.Response:
        started = time.perf_counter()
        request_id = str(uuid.uuid4())
        function = "-"
        try:
            response, function = await self._handle(request, path, request_id)
        except GatewayError as error:
            response = error.response(request_id)
        log.info("%-28s conn=%-17s %7.1fms status=%s fn=%s", f"{request.method} {path}", "-",
                 (time.perf_counter() - started) * 1000, response.status, function)
        return response

    # ---- the pipeline ---------------------------------------------------------------------

    async def _handle(self, request: web.Request, path: str, request_id: str) -> Tuple[web.Response, str]:
        body = await self._read_body(request)
        if path != "/" and path.endswith("/"):
            path = path[:-1]  # API Gateway ignores one trailing slash
        matched = self._routes.match(path)
        if matched is None:
            raise self._no_method(request)
        resource, path_parameters = matched
        route = resource.methods.get(request.method)
        if route is None and request.method == "OPTIONS":
            preflight = next((r.cors for r in resource.methods.values() if r.cors is not None), None)
            if preflight is not None:
                return self._preflight(preflight, request_id), "-"
        route = route or resource.methods.get("ANY")
        if route is None:
            raise self._no_method(request)
        event = self._proxy_event(request, path, resource.path, path_parameters, body, request_id)
        if route.authorizer is not None:
            event["requestContext"]["authorizer"] = await self._authorize(
                self.deployment.authorizers[route.authorizer], request, event)
        if route.api_key_required:
            key = request.headers.get("x-api-key", "")
            if key not in self._api_keys:
                raise FORBIDDEN
            event["requestContext"]["identity"].update(apiKey=key, apiKeyId=self._api_keys[key])
        result = await self._integrate(route.function, event)
        return self._to_response(result, request, request_id), route.function

    @staticmethod
    def _no_method(request: web.Request) -> GatewayError:
        authorization = request.headers.get("Authorization")
        return incomplete_signature(authorization) if authorization else missing_authentication_token()

    async def _read_body(self, request: web.Request) -> bytes:
        if request.content_length is not None and request.content_length > self.max_payload_bytes:
            raise TOO_LARGE
        chunks: List[bytes] = []
        size = 0
        async for chunk in request.content.iter_chunked(64 * 1024):
            size += len(chunk)
            if size > self.max_payload_bytes:
                raise TOO_LARGE
            chunks.append(chunk)
        return b"".join(chunks)

    def _preflight(self, headers: Dict[str, str], request_id: str) -> web.Response:
        return web.Response(status=200, body=b"", content_type="application/json",
                            headers={**headers, "x-amzn-RequestId": request_id})

    async def _integrate(self, function: str, event: Dict[str, Any]) -> Dict[str, Any]:
        task = asyncio.ensure_future(self._invoke(function, event))
        try:
            done, _ = await asyncio.wait({task}, timeout=self.integration_timeout)
        finally:
            if not task.done():
                task.cancel()  # the client left or the integration timed out; the function may run on
        if not done:
            log.warning("%s did not answer within %.1f s", function, self.integration_timeout)
            raise TIMED_OUT
        try:
            return task.result()
        except Exception as exc:
            log.warning("%s failed: %s: %s", function, type(exc).__name__, exc)
            raise INTEGRATION_FAILED from exc

    # ---- the Lambda proxy event -----------------------------------------------------------

    def _proxy_event(self, request: web.Request, path: str, resource: str, path_parameters: Dict[str, str],
                    body: bytes, request_id: str) -> Dict[str, Any]:
        headers, multi_headers = self._headers(request)
        query = request.rel_url.query
        now_ms = int(time.time() * 1000)
        stage = self.deployment.stage
        content_type = _media_types(request.headers.get("Content-Type", ""))
        if body and content_type and _matches_media_type(content_type[0], self.deployment.binary_media_types):
            event_body: Optional[str] = base64.b64encode(body).decode("ascii")
            is_base64 = True
        else:
            event_body, is_base64 = (body.decode("utf-8", errors="replace") if body else None), False
        host = request.host
        return {
            "resource": resource,
            "path": path,
            "httpMethod": request.method,
            "headers": headers or None,
            "multiValueHeaders": multi_headers or None,
            "queryStringParameters": {k: query.getall(k)[-1] for k in query.keys()} or None,
            "multiValueQueryStringParameters": {k: query.getall(k) for k in query.keys()} or None,
            "pathParameters": path_parameters or None,
            "stageVariables": None,
            "requestContext": {
                "accountId": ACCOUNT_ID,
                "apiId": self.api_id,
                "domainName": host,
                "domainPrefix": host.split(".")[0].split(":")[0],
                "extendedRequestId": base64.urlsafe_b64encode(os.urandom(11)).decode(),
                "httpMethod": request.method,
                "identity": {
                    "accessKey": None, "accountId": None, "apiKey": None, "apiKeyId": None, "caller": None,
                    "cognitoAuthenticationProvider": None, "cognitoAuthenticationType": None,
                    "cognitoIdentityId": None, "cognitoIdentityPoolId": None, "principalOrgId": None,
                    "sourceIp": request.remote or "127.0.0.1", "user": None,
                    "userAgent": request.headers.get("User-Agent"), "userArn": None,
                },
                "path": f"/{stage}{path}",
                "protocol": f"HTTP/{request.version.major}.{request.version.minor}",
                "requestId": request_id,
                "requestTime": datetime.fromtimestamp(now_ms / 1000, tz=timezone.utc).strftime(REQUEST_TIME_FORMAT),
                "requestTimeEpoch": now_ms,
                "resourceId": hashlib.sha256(resource.encode()).hexdigest()[:6],
                "resourcePath": resource,
                "stage": stage,
            },
            "body": event_body,
            "isBase64Encoded": is_base64,
        }

    @staticmethod
    def _headers(request: web.Request) -> Tuple[Dict[str, str], Dict[str, List[str]]]:
        """The client's headers, names as sent, plus the X-Forwarded-* API Gateway adds."""
        multi: Dict[str, List[str]] = {}
        for name, value in request.headers.items():
            multi.setdefault(name, []).append(value)
        source_ip = request.remote or "127.0.0.1"
        forwarded = request.headers.get("X-Forwarded-For")
        for name in ("X-Forwarded-For", "X-Forwarded-Port", "X-Forwarded-Proto"):
            multi.pop(name, None)
        multi["X-Forwarded-For"] = [f"{forwarded}, {source_ip}" if forwarded else source_ip]
        port = request.url.port or (443 if request.scheme == "https" else 80)
        multi["X-Forwarded-Port"] = [str(port)]
        multi["X-Forwarded-Proto"] = [request.scheme]
        return {name: values[-1] for name, values in multi.items()}, multi

    # ---- authorizers ----------------------------------------------------------------------

    def _method_arn(self, method: str, path: str) -> str:
        return (f"arn:aws:execute-api:{REGION}:{ACCOUNT_ID}:{self.api_id}/{self.deployment.stage}/"
                f"{method}/{path.lstrip('/')}")

    @staticmethod
    def _identity(authorizer: Authorizer, request: web.Request, event: Dict[str, Any]) -> Tuple[Optional[str], ...]:
        values: List[Optional[str]] = []
        for source in authorizer.identity_sources:
            if source.startswith("method.request.header."):
                value = request.headers.get(source[len("method.request.header."):])
            elif source.startswith("method.request.querystring."):
                value = (event["queryStringParameters"] or {}).get(source[len("method.request.querystring."):])
            elif source.startswith("stageVariables."):
                value = (event["stageVariables"] or {}).get(source[len("stageVariables."):])
            elif source.startswith("context."):
                value = event["requestContext"].get(source[len("context."):])
            else:
                value = None
            values.append(value if value else None)
        return tuple(values)

    async def _authorize(self, authorizer: Authorizer, request: web.Request,
                         event: Dict[str, Any]) -> Dict[str, Any]:
        """The requestContext.authorizer the integration sees, or the GatewayError AWS answers."""
        identity = self._identity(authorizer, request, event)
        caching = authorizer.ttl_seconds > 0
        if any(value is None for value in identity) and (authorizer.kind == "TOKEN" or caching):
            raise UNAUTHORIZED  # the authorizer is never invoked
        method_arn = self._method_arn(request.method, event["path"])
        key = (authorizer.name, tuple(value or "" for value in identity))
        cached = self._auth_cache.get(key) if caching else None
        latency_ms = 0
        if cached is not None and cached[0] > self._clock():
            output = cached[1]
        else:
            if authorizer.kind == "TOKEN":
                auth_event: Dict[str, Any] = {"type": "TOKEN", "authorizationToken": identity[0],
                                              "methodArn": method_arn}
            else:
                auth_event = {"type": "REQUEST", "methodArn": method_arn,
                              **{k: v for k, v in event.items() if k not in ("body", "isBase64Encoded")}}
            started = time.perf_counter()
            output = await self._run_authorizer(authorizer, auth_event)
            latency_ms = int((time.perf_counter() - started) * 1000)
            if caching:
                self._auth_cache[key] = (self._clock() + authorizer.ttl_seconds, output)
        denied = _policy_decision(output["policyDocument"], method_arn)
        if denied is not None:
            raise denied
        context = {name: _context_value(value) for name, value in (output.get("context") or {}).items()}
        return {**context, "principalId": output["principalId"], "integrationLatency": latency_ms}

    async def _run_authorizer(self, authorizer: Authorizer, auth_event: Dict[str, Any]) -> Dict[str, Any]:
        task = asyncio.ensure_future(self._invoke(authorizer.function, auth_event))
        try:
            done, _ = await asyncio.wait({task}, timeout=self.integration_timeout)
        finally:
            if not task.done():
                task.cancel()
        if not done:
            raise AUTHORIZER_FAILED
        try:
            output = task.result()
        except Exception as exc:
            if str(exc) == "Unauthorized":
                raise UNAUTHORIZED from exc
            log.warning("authorizer %s failed: %s: %s", authorizer.name, type(exc).__name__, exc)
            raise AUTHORIZER_FAILED from exc
        if not (isinstance(output, dict) and output.get("principalId") is not None
                and isinstance(output.get("policyDocument"), dict)):
            log.warning("authorizer %s answered without principalId and policyDocument: %r", authorizer.name, output)
            raise AUTHORIZER_FAILED
        try:
            for value in (output.get("context") or {}).values():
                _context_value(value)
        except ValueError as exc:
            log.warning("authorizer %s: %s", authorizer.name, exc)
            raise AUTHORIZER_FAILED from exc
        return output

    # ---- the response -----------------------------------------------------------------------

    def _to_response(self, result: Any, request: web.Request, request_id: str) -> web.Response:
        try:
            status, headers, body = self._proxy_output(result)
        except (TypeError, ValueError) as exc:
            log.warning("malformed Lambda proxy response (%s): %r", exc, result)
            raise INTEGRATION_FAILED from exc
        if result.get("isBase64Encoded") and body:
            accept = _media_types(request.headers.get("Accept", ""))
            if accept and _matches_media_type(accept[0], self.deployment.binary_media_types):
                try:
                    payload = base64.b64decode(body, validate=True)
                except ValueError as exc:
                    raise INTEGRATION_FAILED from exc
            else:
                payload = body.encode()  # API Gateway hands the client the base64 text
        else:
            payload = (body or "").encode()
        if "Content-Type" not in headers:
            headers["Content-Type"] = "application/json"
        headers["x-amzn-RequestId"] = request_id
        headers["x-amz-apigw-id"] = base64.urlsafe_b64encode(os.urandom(6)).decode()
        return web.Response(status=status, body=payload, headers=headers)

    @staticmethod
    def _proxy_output(result: Any) -> Tuple[int, CIMultiDict, Optional[str]]:
        """Lambda's proxy answer, checked as API Gateway checks it."""
        if not isinstance(result, dict):
            raise TypeError("not a JSON object")
        status = result.get("statusCode", 200)
        if isinstance(status, bool) or not isinstance(status, (int, str)) or not 100 <= int(status) <= 599:
            raise ValueError(f"statusCode {status!r}")
        body = result.get("body")
        if body is not None and not isinstance(body, str):
            raise TypeError("body is not a string")
        if not isinstance(result.get("isBase64Encoded", False), bool):
            raise TypeError("isBase64Encoded is not a boolean")
        single = result.get("headers") or {}
        multi = result.get("multiValueHeaders") or {}
        if not isinstance(single, dict) or not isinstance(multi, dict):
            raise TypeError("headers are not objects")
        headers: CIMultiDict = CIMultiDict()
        for name, values in multi.items():
            if not isinstance(values, list):
                raise TypeError(f"multiValueHeaders[{name!r}] is not a list")
            for value in values:
                headers.add(name, str(value))
        for name, value in single.items():
            if name not in multi:  # a header in both: multiValueHeaders' values win
                headers.add(name, str(value))
        for name in list(headers.keys()):
            if name.lower() in HOP_BY_HOP:
                headers.popall(name)
        return int(status), headers, body
