"""A local API Gateway for any Chalice app: WebSockets, REST, the Management API and schedules.

`chalice local` serves REST routes only. This serves a Deployment (local/functions.py: from a
Chalice project, or from a packaged template) on one port, under its stage (Chalice's
``api_gateway_stage``, default ``api``):
- WebSockets at ``/{stage}`` and ``/{stage}/`` (and ``/``): every connect, frame and close becomes a
  Lambda-proxy event shaped like API Gateway's, invoked through local/lambda_runtime.py: each
  function in execution environments (processes) of its own, concurrently, as on AWS. As API
  Gateway does: a non-2xx from ``$connect`` refuses the handshake (a failed ``$connect``: 500); a
  function error on a message route sends the client ``{"message": "Internal server error",
  "connectionId", "requestId"}`` and keeps the socket; an integration slower than 29 s sends
  ``{"message": "Endpoint request timed out", ...}`` (the function itself runs on to its own
  timeout); binary frames close the socket with 1003; a frame over 32 KB or a message over 128 KB
  closes it with 1009; idle and maximum-duration limits close it with 1001 "Going away".
- The Management API at ``/{stage}/@connections/{id}`` (POST, GET, DELETE), answering the real
  boto3 ``apigatewaymanagementapi`` client: 410 GoneException for unknown or closed ids, 400
  BadRequestException "Invalid connectionId" for ids that cannot be API Gateway's.
  Events name the API as AWS does (``{apiId}.execute-api.{region}.amazonaws.com``); the worker
  processes send botocore's requests for that host here (local/lambda_worker.py), so Chalice's own
  ``app.websocket_api.send/close/info`` reach this gateway with no change to the app.
- REST routes under ``/{stage}`` (Chalice's own local gateway, in this process, for now).
- Scheduled functions on their rate (overridable, so tests can speed them up).
- DynamoDB stream functions fed from the functions' writes (``streams``: local/streams.py).
- Static files and extra JSON routes for whoever embeds it.
With ``reload``, a change to the project's Python files restarts the functions' environments;
sockets live here and stay open.

It knows nothing of the app it serves:  cd my-app && python -m local.gateway app:app --port 8000
"""
from __future__ import annotations

import argparse
import asyncio
import base64
import importlib
import json
import logging
import os
import re
import sys
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Callable, Dict, Iterable, List, Optional, Tuple, Union

from aiohttp import WSCloseCode, WSMsgType, web
from aiohttp.http_websocket import WebSocketError

from local.functions import Deployment, deployment_from_chalice
from local.rest_api import RestApi
from local.lambda_runtime import (DEFAULT_PER_FUNCTION, DEFAULT_TOTAL, FunctionError, LambdaRuntime,
                                  watch_files)
from local.streams import LocalStreams

log = logging.getLogger("local.gateway")

MAX_FRAME_BYTES = 128 * 1024        # API Gateway's message payload limit
MAX_WIRE_FRAME_BYTES = 32 * 1024    # API Gateway's WebSocket frame limit: larger messages come in fragments
INTEGRATION_TIMEOUT_S = 29.0        # API Gateway stops waiting for an integration after 29 s
API_ID = "local00001"               # ten characters, as API Gateway's ids
FIXTURE_TIME_FORMAT = "%d/%b/%Y:%H:%M:%S +0000"
SCHEDULE_CONCURRENCY = 2  # runs of one scheduled function at once; a tick beyond that is skipped
CONNECTION_ID = re.compile(r"[A-Za-z0-9_+/-]{15}=")  # what API Gateway's connection ids look like


def load_app(spec: str, project_dir: Optional[str] = None) -> Any:
    """Import a Chalice app given as ``module:attribute`` from ``project_dir`` (default: cwd)."""
    module_name, _, attribute = spec.partition(":")
    folder = os.path.abspath(project_dir or os.getcwd())
    if folder not in sys.path:
        sys.path.insert(0, folder)
    return getattr(importlib.import_module(module_name), attribute or "app")


def _new_id() -> str:
    """16 characters ending in '=', like API Gateway's connection and request ids."""
    return base64.urlsafe_b64encode(os.urandom(11)).decode()


def _request_time(epoch_ms: int) -> str:
    return datetime.fromtimestamp(epoch_ms / 1000, tz=timezone.utc).strftime(FIXTURE_TIME_FORMAT)


def _iso(epoch_ms: int) -> str:
    return datetime.fromtimestamp(epoch_ms / 1000, tz=timezone.utc).isoformat().replace("+00:00", "Z")


@dataclass
class Connection:
    connection_id: str
    ws: web.WebSocketResponse
    source_ip: str
    user_agent: str
    connected_at: int
    last_active: float = field(default_factory=time.monotonic)
    opened: float = field(default_factory=time.monotonic)
    last_active_ms: int = 0
    # set when the server side decides to close: (code sent, disconnect status, reason)
    server_close: Optional[tuple] = None


class _FrameLimit:
    """In front of aiohttp's WebSocket parser (which only sees whole messages): a frame whose
    payload is over ``limit`` fails the socket with 1009, as API Gateway refuses such frames."""

    def __init__(self, parser: Any, limit: int, queue: Callable[[], Any]) -> None:
        self.parser, self.limit, self._queue = parser, limit, queue
        self._header = bytearray()
        self._remaining = 0
        self._failed = False

    def feed_eof(self) -> None:
        self.parser.feed_eof()

    def feed_data(self, data: bytes) -> Tuple[bool, bytes]:
        if not self._failed and not self._within_limit(bytes(data)):
            self._failed = True
            self._queue().set_exception(WebSocketError(WSCloseCode.MESSAGE_TOO_BIG, "Frame too big"))
        if self._failed:
            return True, b""
        return self.parser.feed_data(data)

    def _within_limit(self, data: bytes) -> bool:
        position, size = 0, len(data)
        while position < size:
            if self._remaining:
                taken = min(self._remaining, size - position)
                position += taken
                self._remaining -= taken
                continue
            self._header.append(data[position])
            position += 1
            header = self._header
            if len(header) < 2:
                continue
            short_length = header[1] & 0x7F
            extended = 2 if short_length == 126 else 8 if short_length == 127 else 0
            if len(header) < 2 + extended + (4 if header[1] & 0x80 else 0):
                continue
            length = int.from_bytes(header[2:2 + extended], "big") if extended else short_length
            opcode = header[0] & 0x0F
            self._header = bytearray()
            if opcode < 0x8 and length > self.limit:
                return False
            self._remaining = length
        return True


class _ApiGatewaySocket(web.WebSocketResponse):
    """aiohttp's server socket with API Gateway's frame limit on what clients send."""

    def __init__(self, frame_limit: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._frame_limit = frame_limit

    def _post_start(self, request: Any, protocol: Any, writer: Any) -> None:
        super()._post_start(request, protocol, writer)
        # Clients send frames only once the 101 answer is out, so nothing was parsed before this.
        handler = request.protocol
        handler._payload_parser = _FrameLimit(handler._payload_parser, self._frame_limit, lambda: self._reader)


def _frames(payload: bytes, opcode: int, limit: int) -> bytes:
    """A server-to-client message as unmasked frames of at most ``limit`` bytes each."""
    chunks = [payload[i:i + limit] for i in range(0, len(payload), limit)] or [b""]
    out = bytearray()
    for index, chunk in enumerate(chunks):
        out.append((0x80 if index == len(chunks) - 1 else 0) | (opcode if index == 0 else 0))
        if len(chunk) < 126:
            out.append(len(chunk))
        elif len(chunk) < 65536:
            out += bytes([126]) + len(chunk).to_bytes(2, "big")
        else:
            out += bytes([127]) + len(chunk).to_bytes(8, "big")
        out += chunk
    return bytes(out)


def _consume(task: "asyncio.Future") -> None:
    """A finished task nobody awaits any more: take its outcome (the runtime logged it)."""
    if not task.cancelled():
        task.exception()


class LocalGateway:
    def __init__(self, deployment: Deployment, *, app: Any = None, host: str = "127.0.0.1", port: int = 0,
                 stage: Optional[str] = None, rest_prefix: Optional[str] = None,
                 max_frame_bytes: int = MAX_FRAME_BYTES, max_wire_frame_bytes: int = MAX_WIRE_FRAME_BYTES,
                 integration_timeout: float = INTEGRATION_TIMEOUT_S,
                 idle_timeout: float = 600, max_connection_seconds: float = 7200,
                 schedule_interval: Optional[Callable[[str, float], float]] = None,
                 workers: int = 32, runtime: Optional[LambdaRuntime] = None,
                 function_env: Optional[Dict[str, str]] = None,
                 concurrency_per_function: int = DEFAULT_PER_FUNCTION, concurrency: int = DEFAULT_TOTAL,
                 provisioned_concurrency: int = 0, reload: bool = False, api_keys: Iterable[str] = (),
                 streams: Optional[LocalStreams] = None) -> None:
        """``deployment``: what to serve; its functions run in ``runtime`` (default: a
        LambdaRuntime with ``function_env`` as overrides and the concurrency limits given).
        ``app``: unused (kept for callers that pass it): REST routes run in the functions' workers.
        ``api_keys``: the keys ``x-api-key`` may carry on routes with ``api_key_required``.
        ``schedule_interval(function_name, seconds)`` may change a schedule's rate.
        ``provisioned_concurrency``: environments of each function started before serving.
        ``streams``: feeds the Deployment's stream functions from the writes of its functions."""
        self.deployment = deployment
        self.app = app
        self.host = host
        self.port = port
        self.stage = stage or deployment.stage
        self.rest_prefix = (rest_prefix if rest_prefix is not None else "/" + self.stage).rstrip("/")
        self.max_frame_bytes = max_frame_bytes
        self.max_wire_frame_bytes = max_wire_frame_bytes
        self.integration_timeout = integration_timeout
        self.idle_timeout = idle_timeout
        self.max_connection_seconds = max_connection_seconds
        self.schedule_interval = schedule_interval
        self.reload = reload
        self.provisioned_concurrency = provisioned_concurrency
        region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"
        self.domain_name = f"{API_ID}.execute-api.{region}.amazonaws.com"
        self.runtime = runtime or LambdaRuntime(deployment, overrides=function_env,
                                                per_function=concurrency_per_function, total=concurrency)
        self.invoke = self.runtime.invoke  # the seam: async invoke(function_name, event) -> result
        self.connections: Dict[str, Connection] = {}
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="lambda")
        self._web = web.Application(client_max_size=16 * 1024 * 1024)
        self._runner: Optional[web.AppRunner] = None
        self._tasks: List[asyncio.Task] = []
        self._loop: Optional[asyncio.AbstractEventLoop] = None
        self._thread: Optional[threading.Thread] = None
        self._extra_routes: List[Callable[[web.Application], None]] = []
        self.api_keys = tuple(api_keys)
        self.rest_api: Optional[RestApi] = None
        self.streams = streams

    @classmethod
    def for_chalice(cls, project_dir: str = ".", app_spec: str = "app:app", chalice_stage: Optional[str] = None,
                    **kwargs: Any) -> "LocalGateway":
        """Serve a Chalice project as `chalice deploy --stage` would deploy it."""
        return cls(deployment_from_chalice(project_dir, app_spec, chalice_stage), **kwargs)

    # ---- public surface -------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def websocket_url(self) -> str:
        return f"ws://{self.host}:{self.port}/{self.stage}"

    @property
    def management_endpoint(self) -> str:
        return f"{self.base_url}/{self.stage}"

    @property
    def rest_url(self) -> str:
        return f"{self.base_url}{self.rest_prefix}"

    def add_static(self, prefix: str, directory: str) -> None:
        prefix = prefix.rstrip("/")

        async def index(request: web.Request) -> web.StreamResponse:
            return web.FileResponse(os.path.join(directory, "index.html"))

        def install(app: web.Application) -> None:
            app.router.add_get(prefix + "/", index)
            app.router.add_get(prefix, lambda request: _redirect(prefix + "/"))
            app.router.add_static(prefix + "/", directory, show_index=False)

        self._extra_routes.append(install)

    def add_file(self, path: str, file_path: Union[str, Callable[[], Any]]) -> None:
        """Serve one file; ``file_path`` may be a function naming it (run off the event loop: it may
        build the file first)."""
        async def serve(request: web.Request) -> web.StreamResponse:
            name = await asyncio.to_thread(file_path) if callable(file_path) else file_path
            return web.FileResponse(name, headers={"Cache-Control": "no-cache",
                                                   "Access-Control-Allow-Origin": "*"})

        self._extra_routes.append(lambda app: app.router.add_get(path, serve))

    def add_route(self, method: str, path: str, handler: Callable[[], Any]) -> None:
        """A JSON route: ``handler()`` returns what to send."""
        async def serve(request: web.Request) -> web.StreamResponse:
            return web.json_response(handler(), headers={"Access-Control-Allow-Origin": "*"})

        self._extra_routes.append(lambda app: app.router.add_route(method, path, serve))

    def add_redirect(self, path: str, target: str) -> None:
        self._extra_routes.append(lambda app: app.router.add_get(path, lambda request: _redirect(target)))

    async def start(self) -> None:
        if self.deployment.rest_routes:
            self.rest_api = RestApi(self.deployment, self.invoke, self.api_keys,
                                    integration_timeout=self.integration_timeout)
        self._loop = asyncio.get_running_loop()
        for install in self._extra_routes:
            install(self._web)
        router = self._web.router
        stage = self.stage
        # Most specific first: the Management API and the stage's WebSocket live beside REST routes
        # under the same prefix (API Gateway serves them from different hosts; here one port).
        management = f"/{stage}/@connections/{{connection_id}}"
        router.add_route("POST", management, self._manage_post)
        router.add_route("GET", management, self._manage_get)
        router.add_route("DELETE", management, self._manage_delete)
        router.add_route("*", f"/{stage}", self._handle_stage_root)
        router.add_route("*", f"/{stage}/", self._handle_stage_root)
        if self.rest_prefix:
            router.add_route("*", self.rest_prefix + "/{tail:.*}", self._handle_rest_if_served)
        router.add_get("/", self._handle_websocket_or_next)
        self._runner = web.AppRunner(self._web, access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # the actual port when 0 was asked
        reachable = "127.0.0.1" if self.host in ("0.0.0.0", "", "::") else self.host
        self.runtime.redirect = {
            "host_pattern": re.escape(API_ID) + r"\.execute-api\.[a-z0-9-]+\.amazonaws\.com(\.cn)?",
            "target": f"http://{reachable}:{self.port}",
        }
        if self.streams is not None:
            await self._start_streams(self.streams)
        if self.provisioned_concurrency:
            await self.runtime.provision(self.provisioned_concurrency)
        self._tasks.append(asyncio.create_task(self._watch_limits()))
        self._start_schedules()
        if self.reload:
            self._tasks.append(watch_files(self.deployment.project_dir, self.runtime.reload))
        log.info("gateway listening on %s (WebSocket %s, REST %s)", self.base_url, self.websocket_url, self.rest_url)

    async def _start_streams(self, streams: LocalStreams) -> None:
        """Before any environment starts: they note the writes to these tables from their first call."""
        self.runtime.stream_tables = await streams.start(self.invoke)
        self.runtime.on_stream_writes = streams.note

    async def stop(self) -> None:
        if self.streams is not None:
            await self.streams.stop()
        for task in self._tasks:
            task.cancel()
        for connection in list(self.connections.values()):
            connection.server_close = (WSCloseCode.GOING_AWAY, 1001, "Going away")
            await connection.ws.close(code=WSCloseCode.GOING_AWAY, message=b"Going away")
        await asyncio.sleep(0.1)
        if self._runner is not None:
            await self._runner.cleanup()
        await self.runtime.close()
        self._pool.shutdown(wait=False, cancel_futures=True)

    def run_in_thread(self, timeout: float = 30) -> "LocalGateway":
        """Serve from a background thread with its own event loop; returns once listening."""
        ready = threading.Event()
        failure: List[BaseException] = []

        def serve() -> None:
            loop = asyncio.new_event_loop()
            asyncio.set_event_loop(loop)
            try:
                loop.run_until_complete(self.start())
            except BaseException as exc:  # report to the caller, whatever it was
                failure.append(exc)
                ready.set()
                return
            ready.set()
            loop.run_forever()
            loop.close()

        self._thread = threading.Thread(target=serve, name="gateway", daemon=True)
        self._thread.start()
        if not ready.wait(timeout):
            raise TimeoutError("the gateway did not start")
        if failure:
            raise failure[0]
        return self

    def stop_from_thread(self) -> None:
        if self._loop is None:
            return
        asyncio.run_coroutine_threadsafe(self.stop(), self._loop).result(timeout=30)
        self._loop.call_soon_threadsafe(self._loop.stop)
        if self._thread is not None:
            self._thread.join(timeout=10)

    # ---- API Gateway-shaped events ----------------------------------------------------------

    def _request_context(self, route_key: str, event_type: str, now_ms: int, source_ip: str,
                         connection_id: str, connected_at: int) -> Dict[str, Any]:
        request_id = _new_id()
        return {
            "routeKey": route_key,
            "eventType": event_type,
            "extendedRequestId": request_id,
            "requestTime": _request_time(now_ms),
            "messageDirection": "IN",
            "stage": self.stage,
            "connectedAt": connected_at,
            "requestTimeEpoch": now_ms,
            "identity": {"sourceIp": source_ip},
            "requestId": request_id,
            "domainName": self.domain_name,
            "connectionId": connection_id,
            "apiId": API_ID,
        }

    def connect_event(self, request: web.Request, connection_id: str, connected_at: int) -> Dict[str, Any]:
        headers: Dict[str, str] = {}
        multi: Dict[str, List[str]] = {}
        for name, value in request.headers.items():
            headers[name] = value
            multi.setdefault(name, []).append(value)
        source_ip = request.remote or "127.0.0.1"
        headers.setdefault("X-Forwarded-For", source_ip)
        multi.setdefault("X-Forwarded-For", [source_ip])
        event: Dict[str, Any] = {
            "headers": headers,
            "multiValueHeaders": multi,
            "requestContext": self._request_context("$connect", "CONNECT", connected_at, source_ip,
                                                    connection_id, connected_at),
            "isBase64Encoded": False,
        }
        if request.query:
            event["queryStringParameters"] = {k: v for k, v in request.query.items()}
            event["multiValueQueryStringParameters"] = {k: request.query.getall(k) for k in request.query.keys()}
        return event

    def message_event(self, connection: Connection, body: str, route_key: str, is_base64: bool) -> Dict[str, Any]:
        now_ms = int(time.time() * 1000)
        context = self._request_context(route_key, "MESSAGE", now_ms, connection.source_ip,
                                        connection.connection_id, connection.connected_at)
        context["messageId"] = _new_id()
        return {"requestContext": context, "body": body, "isBase64Encoded": is_base64}

    def disconnect_event(self, connection: Connection, status_code: int, reason: str) -> Dict[str, Any]:
        now_ms = int(time.time() * 1000)
        headers = {"Host": self.domain_name, "x-api-key": "", "X-Forwarded-For": "", "x-restapi": ""}
        context = self._request_context("$disconnect", "DISCONNECT", now_ms, connection.source_ip,
                                        connection.connection_id, connection.connected_at)
        context["disconnectStatusCode"] = status_code
        context["disconnectReason"] = reason
        return {
            "headers": headers,
            "multiValueHeaders": {k: [v] for k, v in headers.items()},
            "requestContext": context,
            "isBase64Encoded": False,
        }

    def _route_key(self, body: str) -> str:
        """API Gateway's route selection on $request.body.action: a custom route, else $default."""
        routes = self.deployment.websocket_routes
        try:
            action = json.loads(body).get("action")
        except (ValueError, AttributeError):
            return "$default"
        return action if isinstance(action, str) and action in routes and not action.startswith("$") else "$default"

    # ---- integrations ---------------------------------------------------------------------

    async def _integrate(self, function: str, event: Dict[str, Any]) -> Tuple[str, Any]:
        """Invoke as API Gateway's Lambda integration does: ("ok", result), ("error", None) for a
        function error, or ("timeout", None) when the integration timeout passes first (the
        invocation runs on to the function's own timeout, as on Lambda)."""
        task = asyncio.ensure_future(self.invoke(function, event))
        done, _ = await asyncio.wait({task}, timeout=self.integration_timeout)
        if not done:
            task.add_done_callback(_consume)
            return "timeout", None
        try:
            return "ok", task.result()
        except FunctionError:
            return "error", None

    async def _tell(self, connection: Connection, message: str, event: Dict[str, Any]) -> None:
        """API Gateway's own frame to a client whose integration failed."""
        frame = {"message": message, "connectionId": connection.connection_id,
                 "requestId": event["requestContext"]["requestId"]}
        try:
            await connection.ws.send_str(json.dumps(frame))
        except ConnectionError:
            pass

    async def _on_message(self, connection: Connection, function: str, event: Dict[str, Any]) -> None:
        outcome, _ = await self._integrate(function, event)
        if outcome == "error":
            await self._tell(connection, "Internal server error", event)
        elif outcome == "timeout":
            await self._tell(connection, "Endpoint request timed out", event)

    # ---- WebSocket lifecycle ----------------------------------------------------------------

    async def _handle_stage_root(self, request: web.Request) -> web.StreamResponse:
        """``/{stage}`` and ``/{stage}/``: the WebSocket API on upgrade, else the REST API's root."""
        if request.headers.get("Upgrade", "").lower() == "websocket":
            return await self._handle_websocket(request)
        request.match_info["tail"] = ""
        return await self._handle_rest_if_served(request)

    async def _handle_rest_if_served(self, request: web.Request) -> web.StreamResponse:
        if self.rest_api is None:
            return web.json_response({"message": "Missing Authentication Token"}, status=403,
                                     headers={"x-amzn-ErrorType": "MissingAuthenticationTokenException"})
        return await self._handle_rest(request)

    async def _handle_websocket_or_next(self, request: web.Request) -> web.StreamResponse:
        if request.headers.get("Upgrade", "").lower() != "websocket":
            raise web.HTTPNotFound()
        return await self._handle_websocket(request)

    async def _handle_websocket(self, request: web.Request) -> web.StreamResponse:
        routes = self.deployment.websocket_routes
        connection_id = _new_id()
        connected_at = int(time.time() * 1000)
        if "$connect" in routes:
            outcome, result = await self._integrate(routes["$connect"], self.connect_event(
                request, connection_id, connected_at))
            if outcome != "ok":
                status = 504 if outcome == "timeout" else 500
                return web.json_response({"message": "Internal server error" if status == 500
                                          else "Endpoint request timed out"}, status=status)
            status = int(result.get("statusCode", 200)) if isinstance(result, dict) else 200
            if not 200 <= status < 300:
                return web.Response(status=status, text=result.get("body") or "Forbidden")
        ws = _ApiGatewaySocket(self.max_wire_frame_bytes, max_msg_size=self.max_frame_bytes,
                               autoping=True, compress=False)
        await ws.prepare(request)
        connection = Connection(connection_id, ws, request.remote or "127.0.0.1",
                                request.headers.get("User-Agent", ""), connected_at,
                                last_active_ms=connected_at)
        self.connections[connection_id] = connection
        in_flight: set = set()
        try:
            async for message in ws:
                if message.type == WSMsgType.ERROR:
                    if isinstance(message.data, WebSocketError) and message.data.code == WSCloseCode.MESSAGE_TOO_BIG:
                        connection.server_close = (WSCloseCode.MESSAGE_TOO_BIG, 1009, "Message too big")
                    break
                if message.type == WSMsgType.BINARY:
                    connection.server_close = (WSCloseCode.UNSUPPORTED_DATA, 1003, "Binary frames are not supported")
                    await ws.close(code=WSCloseCode.UNSUPPORTED_DATA, message=b"Binary frames are not supported")
                    break
                if message.type != WSMsgType.TEXT:
                    continue
                self._touch(connection)
                route_key = self._route_key(message.data)
                function = routes.get(route_key)
                if function is None:
                    continue
                task = asyncio.create_task(self._on_message(
                    connection, function, self.message_event(connection, message.data, route_key, False)))
                in_flight.add(task)
                task.add_done_callback(in_flight.discard)
        finally:
            self.connections.pop(connection_id, None)
            status, reason = self._disconnect_status(connection)
            if in_flight:
                await asyncio.wait(in_flight, timeout=self.integration_timeout + 1)
            if "$disconnect" in routes:
                await self._integrate(routes["$disconnect"], self.disconnect_event(connection, status, reason))
        return ws

    def _disconnect_status(self, connection: Connection) -> tuple:
        if connection.server_close is not None:
            return connection.server_close[1], connection.server_close[2]
        code = connection.ws.close_code
        if code is None or code == WSCloseCode.ABNORMAL_CLOSURE:
            return 1006, "Connection closed abnormally"
        if code == 1005 or code == 0:
            return 1005, "Client-side close frame status not set"
        return int(code), "Client-side close frame"

    def _touch(self, connection: Connection) -> None:
        connection.last_active = time.monotonic()
        connection.last_active_ms = int(time.time() * 1000)

    async def _watch_limits(self) -> None:
        """API Gateway's idle and maximum-duration limits, for every connection: one task looking
        over all of them each step (not a timer per socket: 1,000 sockets were 1,000 wake-ups a
        second)."""
        step = max(0.05, min(1.0, self.idle_timeout / 4, self.max_connection_seconds / 4))
        closing: set = set()
        while True:
            await asyncio.sleep(step)
            now = time.monotonic()
            for connection in list(self.connections.values()):
                if connection.server_close is not None:
                    continue
                if (now - connection.last_active >= self.idle_timeout
                        or now - connection.opened >= self.max_connection_seconds):
                    connection.server_close = (WSCloseCode.GOING_AWAY, 1001, "Going away")
                    task = asyncio.create_task(connection.ws.close(code=WSCloseCode.GOING_AWAY, message=b"Going away"))
                    closing.add(task)
                    task.add_done_callback(closing.discard)

    # ---- Management API ---------------------------------------------------------------------

    def _live(self, request: web.Request) -> Optional[Connection]:
        connection = self.connections.get(request.match_info["connection_id"])
        if connection is None or connection.ws.closed:
            return None
        return connection

    @staticmethod
    def _error(status: int, error_type: str, message: str) -> web.Response:
        return web.json_response({"message": message}, status=status,
                                 headers={"x-amzn-ErrorType": error_type, "x-amzn-RequestId": str(uuid.uuid4())})

    def _malformed(self, request: web.Request) -> Optional[web.Response]:
        """An id API Gateway could never have issued: 400 BadRequestException, as AWS answers
        (an id of the right form that is not connected is 410 GoneException)."""
        connection_id = request.match_info["connection_id"]
        if CONNECTION_ID.fullmatch(connection_id):
            return None
        return self._error(400, "BadRequestException", f"Invalid connectionId: {connection_id}")

    async def _manage_post(self, request: web.Request) -> web.Response:
        data = await request.read()
        malformed = self._malformed(request)
        if malformed is not None:
            return malformed
        if len(data) > self.max_frame_bytes:
            return self._error(413, "PayloadTooLargeException", "Message too large")
        connection = self._live(request)
        if connection is None:
            return self._error(410, "GoneException", "Connection is gone")
        try:
            await self._send(connection.ws, data)
        except ConnectionError:
            return self._error(410, "GoneException", "Connection is gone")
        self._touch(connection)
        return web.Response(status=200)

    async def _send(self, ws: web.WebSocketResponse, data: bytes) -> None:
        """As API Gateway: text when the data is UTF-8, binary otherwise; over 32 KB in fragments."""
        try:
            text: Optional[str] = data.decode()
        except UnicodeDecodeError:
            text = None
        if len(data) <= self.max_wire_frame_bytes:
            await (ws.send_str(text) if text is not None else ws.send_bytes(data))
            return
        writer = ws._writer
        if writer is None or writer.transport is None or writer.transport.is_closing():
            raise ConnectionResetError("the socket is closed")
        # One write, so no other message's frames can land between this one's fragments.
        writer.transport.write(_frames(data, 0x1 if text is not None else 0x2, self.max_wire_frame_bytes))

    async def _manage_get(self, request: web.Request) -> web.Response:
        malformed = self._malformed(request)
        if malformed is not None:
            return malformed
        connection = self._live(request)
        if connection is None:
            return self._error(410, "GoneException", "Connection is gone")
        # the wire names of botocore's GetConnectionResponse shape
        return web.json_response({
            "connectedAt": _iso(connection.connected_at),
            "lastActiveAt": _iso(connection.last_active_ms),
            "identity": {"sourceIp": connection.source_ip, "userAgent": connection.user_agent},
        })

    async def _manage_delete(self, request: web.Request) -> web.Response:
        malformed = self._malformed(request)
        if malformed is not None:
            return malformed
        connection = self._live(request)
        if connection is None:
            return self._error(410, "GoneException", "Connection is gone")
        connection.server_close = (WSCloseCode.GOING_AWAY, 1001, "Going away")
        asyncio.create_task(connection.ws.close(code=WSCloseCode.GOING_AWAY, message=b"Going away"))
        return web.Response(status=204)

    # ---- REST -------------------------------------------------------------------------------

    async def _handle_rest(self, request: web.Request) -> web.StreamResponse:
        """REST as API Gateway's REST API serves it (local/rest_api.py), the function in its workers."""
        assert self.rest_api is not None
        path = request.raw_path.split("?", 1)[0][len(self.rest_prefix):] or "/"
        return await self.rest_api.handle(request, path)

    # ---- schedules --------------------------------------------------------------------------

    def _start_schedules(self) -> None:
        for schedule in self.deployment.schedules:
            seconds = rate_seconds(schedule.expression)
            if seconds is None:
                log.warning("schedule %s (%s) is not a rate; not run locally", schedule.function, schedule.expression)
                continue
            if self.schedule_interval is not None:
                seconds = self.schedule_interval(schedule.function, seconds)
            self._tasks.append(asyncio.create_task(self._run_every(schedule.function, schedule.name, seconds)))

    async def _run_every(self, function: str, rule: str, seconds: float) -> None:
        """Like EventBridge: a run every ``seconds`` on the clock, whether or not the last one has
        finished (a rate is not "pause between runs"); a scheduled function has environments of
        its own, so it never queues behind WebSocket invocations."""
        loop = asyncio.get_running_loop()
        running: set = set()
        next_run = loop.time() + seconds
        try:
            while True:
                await asyncio.sleep(max(0.0, next_run - loop.time()))
                next_run = max(next_run + seconds, loop.time())  # never a burst to catch up
                if len(running) >= SCHEDULE_CONCURRENCY:
                    log.warning("schedule %s: %d runs still going; this one skipped", function, len(running))
                    continue
                event = {
                    "version": "0", "id": str(uuid.uuid4()), "detail-type": "Scheduled Event",
                    "source": "aws.events", "account": "000000000000",
                    "time": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
                    "region": "us-east-1",
                    "resources": [f"arn:aws:events:us-east-1:000000000000:rule/{rule or function}"],
                    "detail": {},
                }
                task = asyncio.ensure_future(self.invoke(function, event))
                task.add_done_callback(_consume)
                running.add(task)
                task.add_done_callback(running.discard)
        finally:
            for task in running:
                task.cancel()


def rate_seconds(expression: Any) -> Optional[float]:
    """Seconds between runs for a Chalice Rate or a ``rate(N unit)`` string; None for cron."""
    text = expression.to_string() if hasattr(expression, "to_string") else str(expression)
    match = re.fullmatch(r"rate\((\d+)\s+(minute|minutes|hour|hours|day|days)\)", text.strip())
    if not match:
        return None
    unit = {"minute": 60, "hour": 3600, "day": 86400}[match.group(2).rstrip("s")]
    return int(match.group(1)) * unit


def _redirect(target: str) -> web.Response:
    raise web.HTTPFound(target)


def main(argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m local.gateway",
        description="Serve a Chalice app's WebSocket and REST APIs locally, each function in Lambda-like "
                    "execution environments of its own. Run it from the app's folder.")
    parser.add_argument("app", nargs="?", default="app:app", help="module:attribute of the Chalice app (app:app)")
    parser.add_argument("--project-dir", default=".", help="the Chalice project folder (default: the current one)")
    parser.add_argument("--chalice-stage", default=None,
                        help="the stage in .chalice/config.json whose settings apply (default: dev)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--stage", default=None,
                        help="the API Gateway stage to serve (default: the config's api_gateway_stage, else api)")
    parser.add_argument("--idle-timeout", type=float, default=600)
    parser.add_argument("--max-connection-seconds", type=float, default=7200)
    parser.add_argument("--concurrency-per-function", type=int, default=DEFAULT_PER_FUNCTION,
                        help="execution environments per function, unless it reserves its own")
    parser.add_argument("--concurrency", type=int, default=DEFAULT_TOTAL, help="execution environments in total")
    parser.add_argument("--no-reload", action="store_true", help="do not restart functions when code changes")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    gateway = LocalGateway.for_chalice(
        args.project_dir, args.app, args.chalice_stage, host=args.host, port=args.port, stage=args.stage,
        idle_timeout=args.idle_timeout, max_connection_seconds=args.max_connection_seconds,
        concurrency_per_function=args.concurrency_per_function, concurrency=args.concurrency,
        reload=not args.no_reload)
    gateway.run_in_thread()
    print(f"WebSocket {gateway.websocket_url}  REST {gateway.rest_url}  Management {gateway.management_endpoint}",
          flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        gateway.stop_from_thread()


if __name__ == "__main__":
    main()
