"""The local gateway and Lambda runtime against API Gateway's recorded events and behaviours, with
a Chalice app that is not Kefu's (tests/apps/echo), served from its own folder as
`python -m local.gateway echo_app:app` serves it: every function in worker processes of its own."""
from __future__ import annotations

import json
import logging
import os
import pathlib
import re
import shutil
import time

import boto3
import pytest
import requests
from botocore.exceptions import ClientError
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect

from local.functions import deployment_from_chalice
from local.gateway import LocalGateway
from tests.e2e.stack import wait_until
from tests.e2e.wsclient import closed_by_peer, half_open_socket
from tests.support import recorded_event

pytestmark = pytest.mark.timeout(90)

ECHO_DIR = pathlib.Path(__file__).resolve().parent / "apps" / "echo"


@pytest.fixture(scope="module")
def echo_deployment():
    return deployment_from_chalice(str(ECHO_DIR), "echo_app:app")


class Echo:
    """A running gateway for the echo app and what its functions recorded."""

    def __init__(self, deployment, events_file: pathlib.Path, project_dir: pathlib.Path = ECHO_DIR,
                 **options) -> None:
        self.events_file = events_file
        options.setdefault("schedule_interval", lambda name, default: 3600)
        self.gw = LocalGateway(deployment, port=0, function_env={"ECHO_EVENTS_FILE": str(events_file)}, **options)
        self.gw.run_in_thread()

    def events(self, kind=None):
        if not self.events_file.exists():
            return []
        found = [json.loads(line) for line in self.events_file.read_text().splitlines() if line.strip()]
        if kind is None:
            return found
        return [e for e in found if e.get("requestContext", {}).get("eventType") == kind]

    def client(self):
        return boto3.client("apigatewaymanagementapi", endpoint_url=self.gw.management_endpoint,
                            region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x")

    def settle(self) -> None:
        """Wait until every invocation has returned: a function's frames reach the client before
        its invocation ends, and a frame sent in between would find no warm environment."""
        wait_until(lambda: all(s["idle"] == s["environments"] for s in self.gw.runtime.stats().values()))

    def stop(self) -> None:
        self.gw.stop_from_thread()


@pytest.fixture
def echo(echo_deployment, tmp_path):
    running = Echo(echo_deployment, tmp_path / "events.jsonl")
    yield running
    running.stop()


def _same_shape(ours, theirs, path="event"):
    """Every key the recorded event has, ours has, with a value of the same JSON type."""
    assert type(ours) is type(theirs), f"{path}: {type(ours).__name__} != {type(theirs).__name__}"
    if isinstance(theirs, dict):
        for key, value in theirs.items():
            if path == "event.headers" or path == "event.multiValueHeaders":
                continue  # header sets differ by client; checked separately
            assert key in ours, f"{path}.{key} missing"
            _same_shape(ours[key], value, f"{path}.{key}")


# ---- the deployment read from the project ---------------------------------------------------------

def test_deployment_from_chalice_reads_routes_stage_and_per_function_config(echo_deployment):
    d = echo_deployment
    assert d.stage == "api"
    assert d.websocket_routes == {"$connect": "WebsocketConnect", "$default": "WebsocketMessage",
                                  "$disconnect": "WebsocketDisconnect"}
    assert d.functions["WebsocketConnect"].handler == "echo_app.connect"
    assert d.functions["APIHandler"].handler == "echo_app.app"
    assert d.functions["WebsocketMessage"].timeout_s == 2  # lambda_functions.websocket_message
    assert d.functions["WebsocketConnect"].timeout_s == 3  # the project's lambda_timeout
    assert d.functions["Tick"].environment == {"ECHO_GREETING": "echo:"}
    assert [(s.function, s.expression) for s in d.schedules] == [("Tick", "rate(5 minutes)")]
    [route] = d.rest_routes
    assert (route.path, route.method, route.function) == ("/hello", "GET", "APIHandler")
    assert route.cors["Access-Control-Allow-Methods"] == "GET,OPTIONS"


def test_deployment_from_chalice_reads_dynamodb_stream_sources():
    from local.functions import StreamSource

    deployment = deployment_from_chalice(str(ECHO_DIR.parents[2]), "app:app")  # Kefu's own app
    assert deployment.streams == [StreamSource(function="IndexMessages", table="kefu-messages", batch_size=100,
                                               batching_window_s=1.0, starting_position="TRIM_HORIZON")]
    assert deployment.functions["IndexMessages"].handler == "app.index_messages"


# ---- events -----------------------------------------------------------------------------------

def test_events_match_api_gateway_field_by_field(echo):
    ws = connect(echo.gw.websocket_url + "?token=abc&x=1", origin="https://shop.example")
    ws.send('{"action": "chat", "message": "Hello from client"}')
    assert ws.recv(timeout=10).startswith("echo:")
    ws.close()
    wait_until(lambda: echo.events("DISCONNECT"))
    connect_event, message_event, disconnect_event = (echo.events("CONNECT")[0], echo.events("MESSAGE")[0],
                                                      echo.events("DISCONNECT")[0])
    _same_shape(connect_event, recorded_event("connect"))
    _same_shape(message_event, recorded_event("message"))
    _same_shape(disconnect_event, recorded_event("disconnect"))
    context = connect_event["requestContext"]
    assert context["routeKey"] == "$connect" and context["eventType"] == "CONNECT"
    assert context["stage"] == "api"
    assert re.fullmatch(r"[a-z0-9]{10}\.execute-api\.us-east-1\.amazonaws\.com", context["domainName"])
    assert context["domainName"].startswith(context["apiId"] + ".")
    assert re.fullmatch(r"[A-Za-z0-9_-]{15}=", context["connectionId"])
    assert re.fullmatch(r"\d\d/[A-Z][a-z]{2}/\d{4}:\d\d:\d\d:\d\d \+0000", context["requestTime"])
    assert connect_event["queryStringParameters"] == {"token": "abc", "x": "1"}
    assert connect_event["multiValueQueryStringParameters"] == {"token": ["abc"], "x": ["1"]}
    assert connect_event["headers"]["Origin"] == "https://shop.example"
    assert {"Sec-WebSocket-Key", "Sec-WebSocket-Version", "X-Forwarded-For"} <= set(connect_event["headers"])
    assert "headers" not in message_event  # as API Gateway: MESSAGE events carry no headers
    assert message_event["requestContext"]["routeKey"] == "$default"  # no "chat" route: falls back
    assert message_event["requestContext"]["messageId"]
    assert message_event["body"] == '{"action": "chat", "message": "Hello from client"}'
    assert set(disconnect_event["headers"]) == set(recorded_event("disconnect")["headers"])
    assert disconnect_event["requestContext"]["disconnectStatusCode"] == 1000
    ids = {e["requestContext"]["connectionId"] for e in (connect_event, message_event, disconnect_event)}
    assert len(ids) == 1


def test_close_without_status_reports_1005(echo):
    sock = half_open_socket(echo.gw.websocket_url)
    sock.sendall(b"\x88\x80" + os.urandom(4))  # a masked close frame with no status code
    closed_by_peer(sock, timeout=10)
    wait_until(lambda: echo.events("DISCONNECT"))
    context = echo.events("DISCONNECT")[0]["requestContext"]
    assert context["disconnectStatusCode"] == 1005
    assert context["disconnectReason"] == "Client-side close frame status not set"


def test_non_2xx_connect_refuses_the_handshake_and_a_failing_connect_is_500(echo):
    with pytest.raises(InvalidStatus) as refused:
        connect(echo.gw.websocket_url + "?refuse=1")
    assert refused.value.response.status_code == 403
    with pytest.raises(InvalidStatus) as failed:
        connect(echo.gw.websocket_url + "?explode=1")
    assert failed.value.response.status_code == 500
    assert echo.events("DISCONNECT") == []


# ---- stage, paths, one port ---------------------------------------------------------------------

def test_stage_with_and_without_trailing_slash_and_rest_beside_it_on_one_port(echo):
    assert echo.gw.websocket_url.endswith("/api") and echo.gw.rest_url.endswith("/api")
    for url in (echo.gw.websocket_url, echo.gw.websocket_url + "/"):
        ws = connect(url)
        ws.send("hi")
        assert ws.recv(timeout=10) == "echo:hi"
        connection_id = echo.events("CONNECT")[-1]["requestContext"]["connectionId"]
        echo.client().post_to_connection(ConnectionId=connection_id, Data=b"pushed")  # /api/@connections/...
        assert ws.recv(timeout=5) == "pushed"
        ws.close()
    assert requests.get(echo.gw.rest_url + "/hello", timeout=5).json() == {"hello": "world"}


def test_rest_routes_and_cors_preflight(echo):
    response = requests.get(echo.gw.rest_url + "/hello", timeout=5)
    assert response.json() == {"hello": "world"}
    preflight = requests.options(echo.gw.rest_url + "/hello", timeout=5, headers={
        "Origin": "https://x.example", "Access-Control-Request-Method": "GET"})
    assert preflight.status_code == 200 and preflight.headers["Access-Control-Allow-Origin"] == "*"
    assert requests.get(echo.gw.rest_url + "/nope", timeout=5).status_code == 403  # as API Gateway


# ---- frames -------------------------------------------------------------------------------------

def test_frames_over_32_kb_close_with_1009_and_are_not_invoked(echo):
    ws = connect(echo.gw.websocket_url)
    ws.send("x" * (32 * 1024))
    assert ws.recv(timeout=10) == "echo:" + "x" * (32 * 1024)
    ws.send("y" * (32 * 1024 + 1))
    with pytest.raises(ConnectionClosed) as closed:
        ws.recv(timeout=5)
    assert closed.value.rcvd.code == 1009
    assert len(echo.events("MESSAGE")) == 1
    wait_until(lambda: echo.events("DISCONNECT"))
    assert echo.events("DISCONNECT")[0]["requestContext"]["disconnectStatusCode"] == 1009


def test_a_message_in_32_kb_fragments_passes_up_to_128_kb(echo):
    ws = connect(echo.gw.websocket_url, max_size=None)
    body = "z" * (128 * 1024 - 10)
    ws.send([body[i:i + 32 * 1024] for i in range(0, len(body), 32 * 1024)])  # one message, four frames
    assert ws.recv(timeout=10) == "echo:" + body  # and the push back over 32 KB arrives in fragments
    too_big = "w" * (128 * 1024 + 1)
    with pytest.raises(ConnectionClosed) as closed:  # the gateway may close before the last fragment
        ws.send([too_big[i:i + 32 * 1024] for i in range(0, len(too_big), 32 * 1024)])
        ws.recv(timeout=5)
    # The client reads the 1009 close frame, unless its own send of the last fragments met the closed
    # TCP connection first (a reset races the close frame): the disconnect reports 1009 either way.
    assert closed.value.rcvd is None or closed.value.rcvd.code == 1009
    wait_until(lambda: echo.events("DISCONNECT"))
    assert echo.events("DISCONNECT")[-1]["requestContext"]["disconnectStatusCode"] == 1009
    assert len(echo.events("MESSAGE")) == 1


def test_binary_frames_close_with_1003(echo):
    ws = connect(echo.gw.websocket_url)
    ws.send(b"\x00\x01binary")
    with pytest.raises(ConnectionClosed) as closed:
        ws.recv(timeout=5)
    assert closed.value.rcvd.code == 1003
    wait_until(lambda: echo.events("DISCONNECT"))
    assert echo.events("DISCONNECT")[0]["requestContext"]["disconnectStatusCode"] == 1003
    assert echo.events("MESSAGE") == []


# ---- the Management API ---------------------------------------------------------------------------

def test_management_api_through_real_boto3(echo):
    ws = connect(echo.gw.websocket_url)
    ws.send("hi")
    ws.recv(timeout=10)
    connection_id = echo.events("CONNECT")[0]["requestContext"]["connectionId"]
    client = echo.client()
    client.post_to_connection(ConnectionId=connection_id, Data=b"pushed")
    assert ws.recv(timeout=5) == "pushed"
    info = client.get_connection(ConnectionId=connection_id)
    assert info["ConnectedAt"] and info["LastActiveAt"] >= info["ConnectedAt"]
    assert info["Identity"]["SourceIp"] == "127.0.0.1"
    with pytest.raises(client.exceptions.PayloadTooLargeException):
        client.post_to_connection(ConnectionId=connection_id, Data=b"z" * (128 * 1024 + 1))
    client.delete_connection(ConnectionId=connection_id)
    with pytest.raises(ConnectionClosed):
        ws.recv(timeout=5)
    wait_until(lambda: echo.events("DISCONNECT"))
    with pytest.raises(client.exceptions.GoneException):
        client.post_to_connection(ConnectionId=connection_id, Data=b"late")
    with pytest.raises(client.exceptions.GoneException):
        client.get_connection(ConnectionId=connection_id)
    with pytest.raises(client.exceptions.GoneException):
        client.delete_connection(ConnectionId=connection_id)


def test_management_api_malformed_ids_are_bad_requests_and_unknown_ids_gone(echo):
    client = echo.client()
    for call in (lambda cid: client.post_to_connection(ConnectionId=cid, Data=b"x"),
                 lambda cid: client.get_connection(ConnectionId=cid),
                 lambda cid: client.delete_connection(ConnectionId=cid)):
        with pytest.raises(ClientError) as bad:
            call("not-a-connection-id")
        assert bad.value.response["Error"]["Code"] == "BadRequestException"
        assert bad.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
        assert bad.value.response["Error"]["Message"] == "Invalid connectionId: not-a-connection-id"
        with pytest.raises(client.exceptions.GoneException):
            call("AAAAAAAAAAAAAAA=")


# ---- integration errors -------------------------------------------------------------------------

def test_a_handler_exception_sends_internal_server_error_and_keeps_the_socket(echo):
    ws = connect(echo.gw.websocket_url)
    ws.send("raise")
    frame = json.loads(ws.recv(timeout=10))
    connection_id = echo.events("CONNECT")[0]["requestContext"]["connectionId"]
    message_event = echo.events("MESSAGE")[0]
    assert frame == {"message": "Internal server error", "connectionId": connection_id,
                     "requestId": message_event["requestContext"]["requestId"]}
    ws.send("still here")
    assert ws.recv(timeout=10) == "echo:still here"


def test_the_integration_timeout_answers_while_the_function_runs_on(echo_deployment, tmp_path):
    # Environments started up front: a cold $connect on a busy machine may itself outlast 0.8 s.
    running = Echo(echo_deployment, tmp_path / "events.jsonl", integration_timeout=0.8, provisioned_concurrency=1)
    try:
        ws = connect(running.gw.websocket_url)
        ws.send("pid")  # warm up, so the timing below is the function's own
        while not ws.recv(timeout=10).isdigit():
            pass  # a cold start may itself outlast so short an integration timeout
        running.settle()
        ws.send("sleep-1.2")
        frame = json.loads(ws.recv(timeout=5))
        assert frame["message"] == "Endpoint request timed out"
        assert frame["requestId"] == running.events("MESSAGE")[-1]["requestContext"]["requestId"]
        assert ws.recv(timeout=5) == "echo:sleep-1.2"  # Lambda finished on its own time
    finally:
        running.stop()


# ---- Lambda's execution model -----------------------------------------------------------------------

def test_module_state_is_never_shared_between_functions(echo):
    ws = connect(echo.gw.websocket_url)
    ws.send("state")
    state = json.loads(ws.recv(timeout=10))
    assert state["connect"] == []  # $connect cached this connection id in its own module
    assert state["message"] == 1
    echo.settle()
    ws.send("state")
    assert json.loads(ws.recv(timeout=10))["message"] == 2  # warm: the same environment again
    stats = echo.gw.runtime.stats()
    assert stats["WebsocketConnect"]["environments"] == 1 and stats["WebsocketMessage"]["environments"] == 1
    assert state["pid"] != os.getpid()


def test_remaining_time_counts_down_from_the_functions_timeout(echo):
    ws = connect(echo.gw.websocket_url)
    ws.send("remaining")
    remaining = int(ws.recv(timeout=10))
    assert 1000 < remaining <= 2000  # websocket_message's lambda_timeout is 2 s


def test_a_function_timeout_kills_and_replaces_the_environment(echo):
    ws = connect(echo.gw.websocket_url)
    ws.send("pid")
    first_pid = int(ws.recv(timeout=10))
    echo.settle()
    started = time.monotonic()
    ws.send("sleep-10")
    frame = json.loads(ws.recv(timeout=10))
    assert frame["message"] == "Internal server error"
    assert 1.8 < time.monotonic() - started < 6  # the 2 s timeout, not the 10 s sleep
    wait_until(lambda: not _alive(first_pid), timeout=5)
    ws.send("pid")
    assert int(ws.recv(timeout=10)) != first_pid


def test_a_crashed_environment_is_replaced(echo):
    ws = connect(echo.gw.websocket_url)
    ws.send("pid")
    first_pid = int(ws.recv(timeout=10))
    echo.settle()
    ws.send("crash")
    assert json.loads(ws.recv(timeout=10))["message"] == "Internal server error"
    ws.send("pid")
    assert int(ws.recv(timeout=10)) != first_pid
    assert echo.gw.runtime.stats()["WebsocketMessage"]["cold_starts"] == 2


def test_concurrency_starts_more_environments_up_to_the_limit(echo_deployment, tmp_path):
    running = Echo(echo_deployment, tmp_path / "events.jsonl", concurrency_per_function=2)
    try:
        ws = connect(running.gw.websocket_url)
        ws.send("pid")
        ws.recv(timeout=10)
        running.settle()
        for _ in range(4):
            ws.send("sleep-0.6")
        replies = [ws.recv(timeout=15) for _ in range(4)]
        assert replies == ["echo:sleep-0.6"] * 4
        stats = running.gw.runtime.stats()["WebsocketMessage"]
        assert stats["cold_starts"] == 2 and stats["environments"] == 2  # never beyond the limit
        for _ in range(6):
            ws.send("pid")
        pids = {ws.recv(timeout=10) for _ in range(6)}
        assert len(pids) <= 2
    finally:
        running.stop()


def test_handlers_run_concurrently(echo):
    ws = connect(echo.gw.websocket_url)
    for _ in range(2):  # two warm environments first, so the timing below is theirs
        ws.send("sleep-0.3")
    ws.recv(timeout=15), ws.recv(timeout=15)
    echo.settle()
    started = time.monotonic()
    ws.send("sleep-0.5")
    ws.send("sleep-0.50")
    replies = {ws.recv(timeout=10), ws.recv(timeout=10)}
    assert replies == {"echo:sleep-0.5", "echo:sleep-0.50"}
    assert time.monotonic() - started < 0.9  # two 0.5 s handlers overlapped


def test_each_invocation_logs_one_line_cold_then_warm(echo, caplog):
    caplog.set_level(logging.INFO, logger="local.lambda")
    ws = connect(echo.gw.websocket_url)
    ws.send("hi")
    ws.recv(timeout=10)
    echo.settle()
    ws.send("hi")
    ws.recv(timeout=10)
    echo.settle()
    connection_id = echo.events("CONNECT")[0]["requestContext"]["connectionId"]
    lines = [r.getMessage() for r in caplog.records if r.name == "local.lambda" and "WebsocketMessage" in r.getMessage()]
    assert len(lines) == 2
    assert all("$default" in line and connection_id in line and "status=200" in line for line in lines)
    assert "cold (init" in lines[0] and lines[1].rstrip().endswith("warm")
    assert re.search(r"\d+\.\dms", lines[1])


def test_code_changes_reload_functions_without_dropping_sockets(echo_deployment, tmp_path):
    project = tmp_path / "echo"
    shutil.copytree(ECHO_DIR, project)
    deployment = deployment_from_chalice(str(project), "echo_app:app")
    running = Echo(deployment, tmp_path / "events.jsonl", project_dir=project, reload=True)
    try:
        ws = connect(running.gw.websocket_url)
        ws.send("version")
        assert ws.recv(timeout=10) == "one"
        source = project / "echo_app.py"
        source.write_text(source.read_text().replace('VERSION = "one"', 'VERSION = "two"'))
        deadline = time.monotonic() + 10
        while True:
            ws.send("version")
            if ws.recv(timeout=10) == "two":
                break
            assert time.monotonic() < deadline, "the change was never picked up"
            time.sleep(0.3)
        assert len(running.events("CONNECT")) == 1  # the same socket all along
    finally:
        running.stop()


def test_idle_timeout_and_max_duration_close_and_disconnect(echo_deployment, tmp_path):
    for limits in ({"idle_timeout": 0.5, "max_connection_seconds": 60},
                   {"idle_timeout": 60, "max_connection_seconds": 0.8}):
        running = Echo(echo_deployment, tmp_path / f"events-{limits['idle_timeout']}.jsonl", **limits)
        try:
            ws = connect(running.gw.websocket_url, ping_interval=None)
            started = time.monotonic()
            if limits["idle_timeout"] > 1:  # keep it busy: only the duration limit may close it
                ws.send("busy")
            with pytest.raises(ConnectionClosed) as closed:
                while True:
                    ws.recv(timeout=5)
            assert closed.value.rcvd.code == 1001 and time.monotonic() - started < 3
            wait_until(lambda: running.events("DISCONNECT"))
            assert running.events("DISCONNECT")[-1]["requestContext"]["disconnectStatusCode"] == 1001
        finally:
            running.stop()


# ---- schedules ----------------------------------------------------------------------------------

def test_scheduled_function_runs_on_the_overridden_interval(echo_deployment, tmp_path):
    running = Echo(echo_deployment, tmp_path / "events.jsonl", schedule_interval=lambda name, default: 0.2)
    try:
        wait_until(lambda: sum(1 for e in running.events() if "scheduled" in e) >= 2, timeout=15)
        scheduled = next(e["scheduled"] for e in running.events() if "scheduled" in e)
        assert scheduled["detail-type"] == "Scheduled Event" and scheduled["source"] == "aws.events"
    finally:
        running.stop()


def test_a_schedule_keeps_its_rate_when_runs_are_slow_and_every_socket_worker_is_busy(tmp_path):
    """As EventBridge: one run per interval on the clock (a slow run does not push the next one
    back), in environments of its own (a scheduled function never waits behind WebSocket ones)."""
    project = tmp_path / "slow"
    project.mkdir()
    (project / "slow_app.py").write_text(
        "import json, os, time\n"
        "from chalice import Chalice\n"
        "app = Chalice(app_name='slow-schedule')\n"
        "@app.schedule('rate(1 minute)')\n"
        "def slow(event):\n"
        "    with open(os.environ['STARTS'], 'a') as f:\n"
        "        f.write(json.dumps([time.time(), os.getpid()]) + '\\n')\n"
        "    time.sleep(0.4)\n")
    starts = tmp_path / "starts.jsonl"
    deployment = deployment_from_chalice(str(project), "slow_app:app")
    gw = LocalGateway(deployment, port=0, function_env={"STARTS": str(starts)}, concurrency_per_function=2,
                      schedule_interval=lambda name, default: 0.25)
    gw.run_in_thread()
    try:
        wait_until(lambda: starts.exists() and len(starts.read_text().splitlines()) >= 8, timeout=20)
    finally:
        gw.stop_from_thread()
    runs = [json.loads(line) for line in starts.read_text().splitlines()]
    times = [t for t, _ in runs][3:]  # once both environments are warm
    gaps = [later - earlier for earlier, later in zip(times, times[1:])]
    assert max(gaps) < 0.5, gaps  # every 0.25 s, not every 0.25 s + the run's 0.4 s
    assert len({pid for _, pid in runs}) == 2  # runs overlap, as EventBridge's do, two at most here


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie not yet reaped counts as gone
        return pathlib.Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False
