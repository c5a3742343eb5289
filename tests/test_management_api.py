"""chalicelib/management_api.py, the boto3-less Management API client every push goes through:
the same requests as boto3's client, API Gateway's answers told apart, kept-alive connections
that recover when the other end closed them, and one retry of throttling and 5xx."""
from __future__ import annotations

import http.server
import json
import threading

import boto3
import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from chalicelib.management_api import GoneException, ManagementApi, ManagementApiError, PayloadTooLargeException
from tests.e2e.stack import wait_until
from tests.test_gateway import echo, echo_deployment  # noqa: F401 (fixtures)

pytestmark = pytest.mark.timeout(90)


@pytest.fixture
def credentials(monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDTEST")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "secret")
    monkeypatch.setenv("AWS_SESSION_TOKEN", "session-token")
    monkeypatch.setenv("AWS_SECURITY_TOKEN", "session-token")


class Recorder:
    """An HTTP/1.1 server that records each request and answers from a script of statuses;
    ``drop_after`` closes the socket after that many answers without saying so, as an idle
    keep-alive timeout does."""

    def __init__(self, statuses=(), drop_after=None):
        self.requests, self.statuses, self.connections = [], list(statuses), set()
        recorder = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _answer(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                recorder.requests.append((self.command, self.path, dict(self.headers), body))
                recorder.connections.add(self.client_address)
                status = recorder.statuses.pop(0) if recorder.statuses else 200
                payload = json.dumps({"message": f"status {status}"}).encode() if status >= 300 else b""
                self.send_response(status)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)
                if drop_after is not None and len(recorder.requests) == drop_after:
                    self.close_connection = True

            do_POST = do_DELETE = _answer

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.endpoint = f"http://127.0.0.1:{self.server.server_address[1]}/api"

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


def test_requests_are_the_ones_boto3_sends(credentials):
    """Same method, path (an id's "=" and "+" encoded as botocore encodes them), body, SigV4 scope
    and signed headers, and the session token."""
    recorder = Recorder()
    try:
        ids = ["L0SM9cOFvHcCIhw=", "a+b/c=="]
        theirs = boto3.session.Session().client("apigatewaymanagementapi", endpoint_url=recorder.endpoint,
                                                region_name="us-east-1")
        ours = ManagementApi(recorder.endpoint, "us-east-1")
        for connection_id in ids:
            theirs.post_to_connection(ConnectionId=connection_id, Data="你好".encode())
            ours.post_to_connection(ConnectionId=connection_id, Data="你好".encode())
            theirs.delete_connection(ConnectionId=connection_id)
            ours.delete_connection(ConnectionId=connection_id)
        assert len(recorder.requests) == 8
        for boto3_request, our_request in zip(recorder.requests[0::2], recorder.requests[1::2]):
            (method, path, headers, body), (our_method, our_path, our_headers, our_body) = boto3_request, our_request
            assert (our_method, our_path, our_body) == (method, path, body)
            assert our_headers["X-Amz-Security-Token"] == headers["X-Amz-Security-Token"] == "session-token"

            def scope(h):
                credential, signed = h["Authorization"].split(", ")[:2]
                return credential.split("/", 2)[2], sorted(set(signed.split("=")[1].split(";")) & {"host", "x-amz-date",
                                                                                                 "x-amz-security-token"})
            assert scope(our_headers) == scope(headers)
            assert scope(our_headers)[0] == "us-east-1/execute-api/aws4_request"
        assert recorder.requests[0][1] == "/api/@connections/L0SM9cOFvHcCIhw%3D"
        assert recorder.requests[4][1] == "/api/@connections/a%2Bb%2Fc%3D%3D"
    finally:
        recorder.stop()


def test_a_kept_alive_connection_is_reused_and_replaced_when_the_other_end_closed_it(credentials):
    recorder = Recorder(drop_after=2)
    try:
        api = ManagementApi(recorder.endpoint, "us-east-1")
        for i in range(4):
            api.post_to_connection(ConnectionId="abc=", Data=b"%d" % i)
        assert [body for *_, body in recorder.requests] == [b"0", b"1", b"2", b"3"]  # each once
        assert len(recorder.connections) == 2  # two on the first connection, then a new one
    finally:
        recorder.stop()


def test_throttling_and_server_errors_are_tried_twice_then_raised(credentials):
    recorder = Recorder(statuses=[429, 200, 503, 503, 403])
    try:
        api = ManagementApi(recorder.endpoint, "us-east-1")
        api.post_to_connection(ConnectionId="abc=", Data=b"a")  # 429, then delivered
        with pytest.raises(ManagementApiError) as failed:
            api.post_to_connection(ConnectionId="abc=", Data=b"b")
        assert failed.value.status == 503
        with pytest.raises(ManagementApiError) as forbidden:  # not retried
            api.post_to_connection(ConnectionId="abc=", Data=b"c")
        assert (forbidden.value.status, forbidden.value.error_type) == (403, "ForbiddenException")
        assert [body for *_, body in recorder.requests] == [b"a", b"a", b"b", b"b", b"c"]
    finally:
        recorder.stop()


def test_the_local_gateway_answers_as_api_gateway_does(echo, credentials):  # noqa: F811
    ws = connect(echo.gw.websocket_url)
    ws.send("hi")
    ws.recv(timeout=10)
    connection_id = echo.events("CONNECT")[0]["requestContext"]["connectionId"]
    api = ManagementApi(echo.gw.management_endpoint, "us-east-1")
    api.post_to_connection(ConnectionId=connection_id, Data="推送".encode())
    assert ws.recv(timeout=5) == "推送"
    with pytest.raises(PayloadTooLargeException):
        api.post_to_connection(ConnectionId=connection_id, Data=b"z" * (128 * 1024 + 1))
    with pytest.raises(ManagementApiError) as malformed:
        api.post_to_connection(ConnectionId="not an id", Data=b"x")
    assert (malformed.value.status, malformed.value.error_type) == (400, "BadRequestException")
    api.delete_connection(ConnectionId=connection_id)
    with pytest.raises(ConnectionClosed):
        ws.recv(timeout=5)
    wait_until(lambda: echo.events("DISCONNECT"))
    with pytest.raises(GoneException):
        api.post_to_connection(ConnectionId=connection_id, Data=b"late")
    with pytest.raises(api.exceptions.GoneException):
        api.delete_connection(ConnectionId=connection_id)
