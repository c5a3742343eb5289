"""A local API Gateway for any Chalice app: WebSockets, REST, the Management API and schedules.

`chalice local` serves REST routes only. This serves, on one port:
- WebSockets at ``/{stage}`` (and ``/``): every connect, frame and close becomes a Lambda-proxy
  event shaped like API Gateway's and is invoked through the app's real Lambda entry point, in a
  thread pool, concurrently, as separate Lambdas would be. A non-2xx from ``$connect`` refuses
  the handshake. Frames over 128 KB close the socket with 1009, as API Gateway does; idle and
  maximum-duration limits close it with 1001 "Going away".
- The Management API at ``/{stage}/@connections/{id}`` (POST, GET, DELETE), answering the real
  boto3 ``apigatewaymanagementapi`` client, with 410 GoneException for unknown or closed ids.
- REST routes under ``/api`` through Chalice's own local gateway (with its CORS handling).
- ``@app.schedule`` functions on their rate (overridable, so tests can speed them up).
- Static files and extra JSON routes for whoever embeds it.

It knows nothing of the app it serves:  python -m local.gateway module:app --port 8000
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
from typing import Any, Callable, Dict, List, Optional

from aiohttp import WSCloseCode, WSMsgType, web

log = logging.getLogger("local.gateway")

MAX_FRAME_BYTES = 128 * 1024
API_ID = "local000001"
FIXTURE_TIME_FORMAT = "%d/%b/%Y:%H:%M:%S +0000"
SCHEDULE_CONCURRENCY = 2  # runs of one scheduled function at once; a tick beyond that is skipped


def load_app(spec: str) -> Any:
    """Import a Chalice app given as ``module:attribute``."""
    module_name, _, attribute = spec.partition(":")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    return getattr(importlib.import_module(module_name), attribute or "app")


def _new_id() -> str:
    """16 characters ending in '=', like API Gateway's connection and request ids."""
    return base64.urlsafe_b64encode(os.urandom(11)).decode()


def _request_time(epoch_ms: int) -> str:
    return datetime.fromtimestamp(epoch_ms / 1000, tz=timezone.utc).strftime(FIXTURE_TIME_FORMAT)


def _iso(epoch_ms: int) -> str:
    return datetime.fromtimestamp(epoch_ms / 1000, tz=timezone.utc).isoformat().replace("+00:00", "Z")


class LambdaContext:
    """What Lambda hands a function as its second argument."""

    def __init__(self, function_name: str, timeout_s: float = 30.0, memory_mb: int = 256) -> None:
        self.function_name = function_name
        self.function_version = "$LATEST"
        self.memory_limit_in_mb = memory_mb
        self.aws_request_id = str(uuid.uuid4())
        self.invoked_function_arn = f"arn:aws:lambda:us-east-1:000000000000:function:{function_name}"
        self.log_group_name = f"/aws/lambda/{function_name}"
        self.log_stream_name = "local"
        self._deadline = time.monotonic() + timeout_s

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))


@dataclass
class Connection:
    connection_id: str
    ws: web.WebSocketResponse
    source_ip: str
    user_agent: str
    connected_at: int
    last_active: float = field(default_factory=time.monotonic)
    last_active_ms: int = 0
    # set when the server side decides to close: (code sent, disconnect status, reason)
    server_close: Optional[tuple] = None


class LocalGateway:
    def __init__(self, app: Any, *, host: str = "127.0.0.1", port: int = 0, stage: str = "dev",
                 rest_prefix: str = "/api", max_frame_bytes: int = MAX_FRAME_BYTES,
                 idle_timeout: float = 600, max_connection_seconds: float = 7200,
                 schedule_interval: Optional[Callable[[str, float], float]] = None,
                 workers: int = 32) -> None:
        self.app = app
        self.host = host
        self.port = port
        self.stage = stage
        self.rest_prefix = rest_prefix.rstrip("/")
        self.max_frame_bytes = max_frame_bytes
        self.idle_timeout = idle_timeout
        self.max_connection_seconds = max_connection_seconds
        self.schedule_interval = schedule_interval
        self.connections: Dict[str, Connection] = {}
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="lambda")
        self._web = web.Application(client_max_size=16 * 1024 * 1024)
        self._runner: Optional[web.AppRunner] = None
        self._tasks: List[asyncio.Task] = []
        self._loop: Optional[asyncio.AbstractEventLoop] = None
        self._thread: Optional[threading.Thread] = None
        self._extra_routes: List[Callable[[web.Application], None]] = []
        self._rest = None

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

    def add_file(self, path: str, file_path: str) -> None:
        async def serve(request: web.Request) -> web.StreamResponse:
            return web.FileResponse(file_path, headers={"Cache-Control": "no-cache",
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
        from chalice.config import Config
        from chalice.local import LocalGateway as ChaliceRestGateway

        self._rest = ChaliceRestGateway(self.app, Config())
        self._loop = asyncio.get_running_loop()
        for install in self._extra_routes:
            install(self._web)
        router = self._web.router
        router.add_route("*", self.rest_prefix + "/{tail:.*}", self._handle_rest)
        router.add_route("POST", "/{stage}/@connections/{connection_id}", self._manage_post)
        router.add_route("GET", "/{stage}/@connections/{connection_id}", self._manage_get)
        router.add_route("DELETE", "/{stage}/@connections/{connection_id}", self._manage_delete)
        router.add_get(f"/{self.stage}", self._handle_websocket)
        router.add_get("/", self._handle_websocket_or_next)
        self._runner = web.AppRunner(self._web, access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # the actual port when 0 was asked
        self._start_schedules()
        log.info("gateway listening on %s (WebSocket %s, REST %s)", self.base_url, self.websocket_url, self.rest_url)

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for connection in list(self.connections.values()):
            connection.server_close = (WSCloseCode.GOING_AWAY, 1001, "Going away")
            await connection.ws.close(code=WSCloseCode.GOING_AWAY, message=b"Going away")
        await asyncio.sleep(0.1)
        if self._runner is not None:
            await self._runner.cleanup()
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

    # ---- invoking the app -------------------------------------------------------------------

    def _handler(self, name: str) -> Optional[Callable[..., Any]]:
        return self.app.handler_map.get(name)

    def _websocket_handler(self, route_key: str) -> Optional[Callable[..., Any]]:
        config = getattr(self.app, "websocket_handlers", {}).get(route_key)
        return self._handler(config.name) if config is not None else None

    async def _invoke(self, label: str, connection_id: str, handler: Callable[..., Any],
                      event: Dict[str, Any], function_name: str,
                      executor: Optional[ThreadPoolExecutor] = None) -> Dict[str, Any]:
        started = time.perf_counter()
        context = LambdaContext(function_name)
        loop = asyncio.get_running_loop()
        try:
            result = await loop.run_in_executor(executor or self._pool, handler, event, context)
            status = int((result or {}).get("statusCode", 200)) if isinstance(result, dict) else 200
        except Exception:
            log.exception("%s raised", label)
            result, status = {"statusCode": 502}, 502
        log.info("%-28s conn=%-17s %7.1fms status=%s", label, connection_id,
                 (time.perf_counter() - started) * 1000, status)
        return result if isinstance(result, dict) else {"statusCode": status}

    # ---- API Gateway-shaped events ----------------------------------------------------------

    def _request_context(self, route_key: str, event_type: str, connection: Any, now_ms: int,
                         source_ip: str, connection_id: str, connected_at: int) -> Dict[str, Any]:
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
            "domainName": f"{self.host}:{self.port}",
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
            "requestContext": self._request_context("$connect", "CONNECT", None, connected_at, source_ip,
                                                    connection_id, connected_at),
            "isBase64Encoded": False,
        }
        if request.query:
            event["queryStringParameters"] = {k: v for k, v in request.query.items()}
            event["multiValueQueryStringParameters"] = {k: request.query.getall(k) for k in request.query.keys()}
        return event

    def message_event(self, connection: Connection, body: str, route_key: str, is_base64: bool) -> Dict[str, Any]:
        now_ms = int(time.time() * 1000)
        context = self._request_context(route_key, "MESSAGE", connection, now_ms, connection.source_ip,
                                        connection.connection_id, connection.connected_at)
        context["messageId"] = _new_id()
        return {"requestContext": context, "body": body, "isBase64Encoded": is_base64}

    def disconnect_event(self, connection: Connection, status_code: int, reason: str) -> Dict[str, Any]:
        now_ms = int(time.time() * 1000)
        host = f"{self.host}:{self.port}"
        headers = {"Host": host, "x-api-key": "", "X-Forwarded-For": "", "x-restapi": ""}
        context = self._request_context("$disconnect", "DISCONNECT", connection, now_ms, connection.source_ip,
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
        routes = getattr(self.app, "websocket_handlers", {})
        try:
            action = json.loads(body).get("action")
        except (ValueError, AttributeError):
            return "$default"
        return action if isinstance(action, str) and action in routes and not action.startswith("$") else "$default"

    # ---- WebSocket lifecycle ----------------------------------------------------------------

    async def _handle_websocket_or_next(self, request: web.Request) -> web.StreamResponse:
        if request.headers.get("Upgrade", "").lower() != "websocket":
            raise web.HTTPNotFound()
        return await self._handle_websocket(request)

    async def _handle_websocket(self, request: web.Request) -> web.StreamResponse:
        if request.headers.get("Upgrade", "").lower() != "websocket":
            return web.Response(status=426, text="WebSocket upgrade required")
        connection_id = _new_id()
        connected_at = int(time.time() * 1000)
        handler = self._websocket_handler("$connect")
        if handler is not None:
            result = await self._invoke("$connect", connection_id, handler,
                                        self.connect_event(request, connection_id, connected_at), "$connect")
            status = int(result.get("statusCode", 200))
            if not 200 <= status < 300:
                return web.Response(status=status, text=result.get("body") or "Forbidden")
        ws = web.WebSocketResponse(max_msg_size=0, autoping=True)
        await ws.prepare(request)
        connection = Connection(connection_id, ws, request.remote or "127.0.0.1",
                                request.headers.get("User-Agent", ""), connected_at,
                                last_active_ms=connected_at)
        self.connections[connection_id] = connection
        watchdog = asyncio.create_task(self._watch_limits(connection))
        in_flight: set = set()
        try:
            async for message in ws:
                if message.type not in (WSMsgType.TEXT, WSMsgType.BINARY):
                    continue
                data = message.data
                size = len(data.encode() if isinstance(data, str) else data)
                if size > self.max_frame_bytes:
                    connection.server_close = (WSCloseCode.MESSAGE_TOO_BIG, 1009, "Message too big")
                    await ws.close(code=WSCloseCode.MESSAGE_TOO_BIG, message=b"Message too big")
                    break
                self._touch(connection)
                if isinstance(data, str):
                    body, is_base64 = data, False
                else:
                    body, is_base64 = base64.b64encode(data).decode(), True
                route_key = self._route_key(body) if not is_base64 else "$default"
                handler = self._websocket_handler(route_key)
                if handler is None:
                    continue
                task = asyncio.create_task(self._invoke(
                    route_key, connection_id, handler,
                    self.message_event(connection, body, route_key, is_base64), route_key))
                in_flight.add(task)
                task.add_done_callback(in_flight.discard)
        finally:
            watchdog.cancel()
            self.connections.pop(connection_id, None)
            status, reason = self._disconnect_status(connection)
            if in_flight:
                await asyncio.wait(in_flight, timeout=30)
            handler = self._websocket_handler("$disconnect")
            if handler is not None:
                await self._invoke("$disconnect", connection_id, handler,
                                   self.disconnect_event(connection, status, reason), "$disconnect")
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

    async def _watch_limits(self, connection: Connection) -> None:
        opened = time.monotonic()
        step = max(0.05, min(1.0, self.idle_timeout / 4, self.max_connection_seconds / 4))
        while True:
            await asyncio.sleep(step)
            now = time.monotonic()
            if now - connection.last_active >= self.idle_timeout or now - opened >= self.max_connection_seconds:
                connection.server_close = (WSCloseCode.GOING_AWAY, 1001, "Going away")
                await connection.ws.close(code=WSCloseCode.GOING_AWAY, message=b"Going away")
                return

    # ---- Management API ---------------------------------------------------------------------

    def _live(self, request: web.Request) -> Optional[Connection]:
        if request.match_info["stage"] != self.stage:
            return None
        connection = self.connections.get(request.match_info["connection_id"])
        if connection is None or connection.ws.closed:
            return None
        return connection

    @staticmethod
    def _error(status: int, error_type: str, message: str) -> web.Response:
        return web.json_response({"message": message}, status=status,
                                 headers={"x-amzn-ErrorType": error_type, "x-amzn-RequestId": str(uuid.uuid4())})

    async def _manage_post(self, request: web.Request) -> web.Response:
        data = await request.read()
        if len(data) > self.max_frame_bytes:
            return self._error(413, "PayloadTooLargeException", "Message too large")
        connection = self._live(request)
        if connection is None:
            return self._error(410, "GoneException", "Connection is gone")
        try:
            await connection.ws.send_str(data.decode())
        except UnicodeDecodeError:
            await connection.ws.send_bytes(data)
        except ConnectionError:
            return self._error(410, "GoneException", "Connection is gone")
        self._touch(connection)
        return web.Response(status=200)

    async def _manage_get(self, request: web.Request) -> web.Response:
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
        connection = self._live(request)
        if connection is None:
            return self._error(410, "GoneException", "Connection is gone")
        connection.server_close = (WSCloseCode.GOING_AWAY, 1001, "Going away")
        asyncio.create_task(connection.ws.close(code=WSCloseCode.GOING_AWAY, message=b"Going away"))
        return web.Response(status=204)

    # ---- REST -------------------------------------------------------------------------------

    async def _handle_rest(self, request: web.Request) -> web.Response:
        from chalice.local import ForbiddenError

        path = "/" + request.match_info["tail"]
        if request.query_string:
            path += "?" + request.query_string
        body = await request.read()
        headers = {k.lower(): v for k, v in request.headers.items()}
        started = time.perf_counter()
        loop = asyncio.get_running_loop()
        try:
            result = await loop.run_in_executor(
                self._pool, self._rest.handle_request, request.method, path, headers, body or None)
        except ForbiddenError as exc:
            result = {"statusCode": 403, "headers": exc.headers, "body": exc.body}
        status = int(result.get("statusCode", 200))
        log.info("%-28s conn=%-17s %7.1fms status=%s", f"{request.method} /{request.match_info['tail']}",
                 "-", (time.perf_counter() - started) * 1000, status)
        response_headers = dict(result.get("headers") or {})
        for name, values in (result.get("multiValueHeaders") or {}).items():
            response_headers[name] = ", ".join(values)
        raw = result.get("body")
        if result.get("isBase64Encoded") and raw:
            payload = base64.b64decode(raw)
        elif isinstance(raw, bytes):
            payload = raw
        else:
            payload = (raw or "").encode()
        response_headers.pop("Content-Length", None)
        return web.Response(status=status, body=payload, headers=response_headers)

    # ---- schedules --------------------------------------------------------------------------

    def _start_schedules(self) -> None:
        for source in getattr(self.app, "event_sources", []):
            expression = getattr(source, "schedule_expression", None)
            if expression is None:
                continue
            seconds = rate_seconds(expression)
            if seconds is None:
                log.warning("schedule %s (%s) is not a rate; not run locally", source.name, expression)
                continue
            if self.schedule_interval is not None:
                seconds = self.schedule_interval(source.name, seconds)
            self._tasks.append(asyncio.create_task(self._run_every(source.name, seconds)))

    async def _run_every(self, name: str, seconds: float) -> None:
        """Like EventBridge: a run every ``seconds`` on the clock, whether or not the last one has
        finished (a rate is not "pause between runs"), each on threads of its own, as a scheduled
        function is a separate Lambda function that never queues behind WebSocket invocations."""
        handler = self._handler(name)
        loop = asyncio.get_running_loop()
        pool = ThreadPoolExecutor(max_workers=SCHEDULE_CONCURRENCY, thread_name_prefix=f"schedule-{name}")
        running: set = set()
        next_run = loop.time() + seconds
        try:
            while True:
                await asyncio.sleep(max(0.0, next_run - loop.time()))
                next_run = max(next_run + seconds, loop.time())  # never a burst to catch up
                if len(running) >= SCHEDULE_CONCURRENCY:
                    log.warning("schedule %s: %d runs still going; this one skipped", name, len(running))
                    continue
                event = {
                    "version": "0", "id": str(uuid.uuid4()), "detail-type": "Scheduled Event",
                    "source": "aws.events", "account": "000000000000",
                    "time": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
                    "region": "us-east-1", "resources": [f"arn:aws:events:us-east-1:000000000000:rule/{name}"],
                    "detail": {},
                }
                task = asyncio.create_task(self._invoke(f"schedule:{name}", "-", handler, event, name, pool))
                running.add(task)
                task.add_done_callback(running.discard)
        finally:
            for task in running:
                task.cancel()
            pool.shutdown(wait=False, cancel_futures=True)


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
    parser = argparse.ArgumentParser(prog="python -m local.gateway",
                                     description="Serve a Chalice app's WebSocket and REST APIs locally.")
    parser.add_argument("app", help="module:attribute of the Chalice app, e.g. app:app")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--stage", default="dev")
    parser.add_argument("--idle-timeout", type=float, default=600)
    parser.add_argument("--max-connection-seconds", type=float, default=7200)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    gateway = LocalGateway(load_app(args.app), host=args.host, port=args.port, stage=args.stage,
                           idle_timeout=args.idle_timeout, max_connection_seconds=args.max_connection_seconds)
    gateway.run_in_thread()
    print(f"WebSocket {gateway.websocket_url}  REST {gateway.rest_url}  Management {gateway.management_endpoint}",
          flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        gateway.stop_from_thread()


if __name__ == "__main__":
    main()
