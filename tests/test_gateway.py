"""The local gateway against API Gateway's recorded events and limits, with a foreign Chalice app."""
from __future__ import annotations

import os
import re
import threading
import time

import boto3
import pytest
import requests
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect

from local.gateway import LocalGateway
from tests import echo_app
from tests.e2e.stack import wait_until
from tests.e2e.wsclient import closed_by_peer, half_open_socket
from tests.support import recorded_event

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def gateway():
    echo_app.events.clear()
    gw = LocalGateway(echo_app.app, port=0, idle_timeout=600, max_connection_seconds=7200,
                      schedule_interval=lambda name, default: 0.2)
    gw.run_in_thread()
    os.environ["ECHO_MANAGEMENT_ENDPOINT"] = gw.management_endpoint
    yield gw
    gw.stop_from_thread()


def _events(kind):
    return [e for e in echo_app.events if e.get("requestContext", {}).get("eventType") == kind]


def _same_shape(ours, theirs, path="event"):
    """Every key the recorded event has, ours has, with a value of the same JSON type."""
    assert type(ours) is type(theirs), f"{path}: {type(ours).__name__} != {type(theirs).__name__}"
    if isinstance(theirs, dict):
        for key, value in theirs.items():
            if path == "event.headers" or path == "event.multiValueHeaders":
                continue  # header sets differ by client; checked separately
            assert key in ours, f"{path}.{key} missing"
            _same_shape(ours[key], value, f"{path}.{key}")


def test_events_match_api_gateway_field_by_field(gateway):
    ws = connect(gateway.websocket_url + "?token=abc&x=1", origin="https://shop.example")
    ws.send('{"action": "chat", "message": "Hello from client"}')
    assert ws.recv(timeout=5).startswith("echo:")
    ws.close()
    wait_until(lambda: _events("DISCONNECT"))
    connect_event, message_event, disconnect_event = _events("CONNECT")[0], _events("MESSAGE")[0], _events("DISCONNECT")[0]
    _same_shape(connect_event, recorded_event("connect"))
    _same_shape(message_event, recorded_event("message"))
    _same_shape(disconnect_event, recorded_event("disconnect"))
    context = connect_event["requestContext"]
    assert context["routeKey"] == "$connect" and context["eventType"] == "CONNECT"
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


def test_close_without_status_reports_1005(gateway):
    sock = half_open_socket(gateway.websocket_url)
    sock.sendall(b"\x88\x80" + os.urandom(4))  # a masked close frame with no status code
    closed_by_peer(sock, timeout=5)
    wait_until(lambda: _events("DISCONNECT"))
    context = _events("DISCONNECT")[0]["requestContext"]
    assert context["disconnectStatusCode"] == 1005
    assert context["disconnectReason"] == "Client-side close frame status not set"


def test_non_2xx_connect_refuses_the_handshake(gateway):
    with pytest.raises(InvalidStatus) as refused:
        connect(gateway.websocket_url + "?refuse=1")
    assert refused.value.response.status_code == 403
    assert _events("DISCONNECT") == []


def test_oversize_frame_closes_with_1009_and_is_not_invoked(gateway):
    ws = connect(gateway.websocket_url)
    ws.send("x" * (128 * 1024 - 10))
    assert ws.recv(timeout=5).startswith("echo:")
    ws.send("y" * (128 * 1024 + 1))
    with pytest.raises(ConnectionClosed) as closed:
        ws.recv(timeout=5)
    assert closed.value.rcvd.code == 1009
    assert len(_events("MESSAGE")) == 1
    wait_until(lambda: _events("DISCONNECT"))
    assert _events("DISCONNECT")[0]["requestContext"]["disconnectStatusCode"] == 1009


def test_management_api_through_real_boto3(gateway):
    ws = connect(gateway.websocket_url)
    ws.send("hi")
    ws.recv(timeout=5)
    connection_id = _events("CONNECT")[0]["requestContext"]["connectionId"]
    client = boto3.client("apigatewaymanagementapi", endpoint_url=gateway.management_endpoint,
                          region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x")
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
    wait_until(lambda: _events("DISCONNECT"))
    with pytest.raises(client.exceptions.GoneException):
        client.post_to_connection(ConnectionId=connection_id, Data=b"late")
    with pytest.raises(client.exceptions.GoneException):
        client.get_connection(ConnectionId=connection_id)
    with pytest.raises(client.exceptions.GoneException):
        client.delete_connection(ConnectionId=connection_id)


def test_idle_timeout_and_max_duration_close_and_disconnect():
    echo_app.events.clear()
    for limits in ({"idle_timeout": 0.5, "max_connection_seconds": 60},
                   {"idle_timeout": 60, "max_connection_seconds": 0.8}):
        gw = LocalGateway(echo_app.app, port=0, **limits)
        gw.run_in_thread()
        os.environ["ECHO_MANAGEMENT_ENDPOINT"] = gw.management_endpoint
        try:
            ws = connect(gw.websocket_url, ping_interval=None)
            started = time.monotonic()
            if limits["idle_timeout"] > 1:  # keep it busy: only the duration limit may close it
                ws.send("busy")
            with pytest.raises(ConnectionClosed) as closed:
                while True:
                    ws.recv(timeout=5)
            assert closed.value.rcvd.code == 1001 and time.monotonic() - started < 3
            wait_until(lambda: _events("DISCONNECT"))
            assert _events("DISCONNECT")[-1]["requestContext"]["disconnectStatusCode"] == 1001
            echo_app.events.clear()
        finally:
            gw.stop_from_thread()


def test_handlers_run_concurrently(gateway):
    ws = connect(gateway.websocket_url)
    started = time.monotonic()
    ws.send("sleep-1")
    ws.send("sleep-2")
    replies = {ws.recv(timeout=5), ws.recv(timeout=5)}
    assert replies == {"echo:sleep-1", "echo:sleep-2"}
    assert time.monotonic() - started < 0.9  # two 0.5 s handlers overlapped


def test_rest_routes_and_cors_preflight(gateway):
    response = requests.get(gateway.rest_url + "/hello", timeout=5)
    assert response.json() == {"hello": "world"}
    preflight = requests.options(gateway.rest_url + "/hello", timeout=5, headers={
        "Origin": "https://x.example", "Access-Control-Request-Method": "GET"})
    assert preflight.status_code == 200 and preflight.headers["Access-Control-Allow-Origin"] == "*"
    assert requests.get(gateway.rest_url + "/nope", timeout=5).status_code == 403  # as API Gateway


def test_scheduled_function_runs_on_the_overridden_interval(gateway):
    wait_until(lambda: sum(1 for e in echo_app.events if "scheduled" in e) >= 2, timeout=5)
    scheduled = next(e["scheduled"] for e in echo_app.events if "scheduled" in e)
    assert scheduled["detail-type"] == "Scheduled Event" and scheduled["source"] == "aws.events"


def test_a_schedule_keeps_its_rate_when_runs_are_slow_and_every_socket_worker_is_busy():
    """As EventBridge: one run per interval on the clock (a slow run does not push the next one
    back), on threads of its own (a scheduled function never waits behind WebSocket invocations)."""
    from chalice import Chalice

    app = Chalice(app_name="slow-schedule")
    starts, running, most, lock = [], [0], [0], threading.Lock()

    @app.schedule("rate(1 minute)")
    def slow(event):
        with lock:
            starts.append(time.monotonic())
            running[0] += 1
            most[0] = max(most[0], running[0])
        time.sleep(0.4)
        with lock:
            running[0] -= 1

    gw = LocalGateway(app, port=0, workers=1, schedule_interval=lambda name, default: 0.25)
    gw.run_in_thread()
    try:
        gw._pool.submit(time.sleep, 4)  # the only WebSocket worker is taken
        wait_until(lambda: len(starts) >= 5, timeout=3.5)
    finally:
        gw.stop_from_thread()
    gaps = [later - earlier for earlier, later in zip(starts, starts[1:])]
    assert max(gaps) < 0.5, gaps  # every 0.25 s, not every 0.25 s + the run's 0.4 s
    assert most[0] == 2  # runs overlap, as EventBridge's do, two at most here
