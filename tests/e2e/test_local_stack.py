"""End-to-end: the real local stack over loopback, driven by real WebSocket and HTTP clients."""
from __future__ import annotations

import boto3
import pytest
import requests
from websockets.exceptions import ConnectionClosed, InvalidStatus

from tests.e2e.stack import RunningStack, wait_until
from tests.e2e.wsclient import ChatClient

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def stack():
    running = RunningStack(env={"KEFU_RATE_LIMIT": "1000"})
    yield running
    running.stop()


def _pair(stack):
    agent = stack.agent()
    agent_ws = ChatClient(stack.ws_url(agent["token"]))
    visitor = stack.visitor(name="Vera")
    visitor_ws = ChatClient(stack.ws_url(visitor["token"]), origin=stack.base)
    assert visitor_ws.request({"action": "ping"})["type"] == "pong"  # past $connect
    return agent, agent_ws, visitor, visitor_ws


def test_local_info_serves_the_contract(stack):
    info = requests.get(stack.base + "/local/info", timeout=5).json()
    for field in ("websocket_url", "api_url", "site_id", "agent_email", "agent_password", "management_endpoint"):
        assert info[field], field
    assert info["websocket_url"].startswith("ws://127.0.0.1:")


def test_the_widget_is_served_as_it_is_hosted_minified_with_its_source_map(stack):
    from infra import widget

    script = requests.get(info_widget_url(stack), timeout=10)
    assert script.status_code == 200 and "javascript" in script.headers["Content-Type"]
    assert script.text == widget.BUILT.read_text()
    assert script.text.rstrip().endswith("//# sourceMappingURL=widget.js.map")
    assert len(script.content) < widget.SOURCE.stat().st_size * 0.8
    mapped = requests.get(info_widget_url(stack) + ".map", timeout=10).json()
    assert mapped["sources"] == ["widget.js"] and mapped["sourcesContent"] == [widget.SOURCE.read_text()]


def info_widget_url(stack) -> str:
    return requests.get(stack.base + "/local/info", timeout=5).json()["widget_url"]


def test_visitor_and_agent_exchange_messages_both_ways(stack):
    agent, agent_ws, visitor, visitor_ws = _pair(stack)
    cid = visitor["conversation_id"]
    ack = visitor_ws.request({"action": "send", "conversation_id": cid, "client_msg_id": "v1", "text": "Hello?"})
    assert ack["type"] == "ack" and ack["seq"] == 1
    got = agent_ws.wait_type("message", conversation_id=cid)
    assert got["text"] == "Hello?" and got["sender"]["role"] == "visitor"
    ack = agent_ws.request({"action": "send", "conversation_id": cid, "client_msg_id": "a1", "text": "Hi Vera"})
    assert ack["seq"] == 2
    assert visitor_ws.wait_type("message", conversation_id=cid)["text"] == "Hi Vera"
    agent_ws.close()
    visitor_ws.close()


def test_dropped_client_reconnects_and_sync_returns_exactly_what_it_missed(stack):
    agent, agent_ws, visitor, visitor_ws = _pair(stack)
    cid = visitor["conversation_id"]
    visitor_ws.request({"action": "send", "conversation_id": cid, "client_msg_id": "v1", "text": "first"})
    agent_ws.wait_type("message", conversation_id=cid)
    visitor_ws.ws.socket.close()  # the network drops: no close frame
    missed = []
    for i in range(60):
        ack = agent_ws.request({"action": "send", "conversation_id": cid, "client_msg_id": f"m{i}", "text": f"m{i}"})
        assert ack["type"] == "ack", ack
        missed.append(ack["seq"])
    visitor_ws = ChatClient(stack.ws_url(visitor["token"]), origin=stack.base)
    got, after = [], 1
    while True:
        page = visitor_ws.request({"action": "sync", "conversation_id": cid, "after_seq": after})
        got += page["messages"]
        if not page["has_more"]:
            break
        after = page["messages"][-1]["seq"]
    assert [m["seq"] for m in got] == missed
    assert [m["text"] for m in got] == [f"m{i}" for i in range(60)]


def test_posting_to_a_closed_connection_gives_410_through_boto3(stack):
    agent = stack.agent()
    ws = ChatClient(stack.ws_url(agent["token"]))
    state = ws.request({"action": "state"})
    assert state["type"] == "state"
    client = boto3.client("apigatewaymanagementapi", endpoint_url=stack.info["management_endpoint"],
                          region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x")
    ws.close()
    with pytest.raises(client.exceptions.GoneException):
        client.post_to_connection(ConnectionId="AAAAAAAAAAAAAAA=", Data=b"{}")


def test_management_api_delivers_to_a_live_socket(stack):
    agent = stack.agent()
    ws = ChatClient(stack.ws_url(agent["token"]))
    client = boto3.client("apigatewaymanagementapi", endpoint_url=stack.info["management_endpoint"],
                          region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x")
    connection_id = ws.request({"action": "state"})["connection_id"]
    client.post_to_connection(ConnectionId=connection_id, Data=b'{"type":"hello-from-boto3"}')
    info = client.get_connection(ConnectionId=connection_id)
    assert "ConnectedAt" in info and "LastActiveAt" in info and "SourceIp" in info["Identity"]
    delivered = True
    assert delivered
    assert ws.wait_type("hello-from-boto3")
    ws.close()


def test_bad_token_is_refused_at_the_handshake(stack):
    with pytest.raises(InvalidStatus) as refused:
        ChatClient(stack.ws_url("forged.token.value"))
    assert refused.value.response.status_code == 401
    visitor = stack.visitor()
    with pytest.raises(InvalidStatus) as foreign:
        ChatClient(stack.ws_url(visitor["token"]), origin="https://evil.example")
    assert foreign.value.response.status_code in (401, 403)


def test_oversize_frame_is_refused_as_api_gateway_refuses_it(stack):
    visitor = stack.visitor()
    ws = ChatClient(stack.ws_url(visitor["token"]), origin=stack.base)
    ws.send({"action": "send", "conversation_id": visitor["conversation_id"], "client_msg_id": "big",
             "text": "x" * (128 * 1024 + 10)})
    with pytest.raises(ConnectionClosed) as closed:
        ws.ws.recv(timeout=10)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1009
    page = stack.rest("GET", f"/v1/conversations/{visitor['conversation_id']}/messages",
                      token=visitor["token"]).json()
    assert page["messages"] == []


def test_rest_routes_answer_with_cors(stack):
    response = stack.rest("OPTIONS", "/v1/visitor/session", headers={
        "Origin": "https://shop.example", "Access-Control-Request-Method": "POST"})
    assert response.status_code in (200, 204)
    assert response.headers.get("Access-Control-Allow-Origin")
    bad = stack.rest("POST", "/v1/visitor/session", json={"site_id": "nope"})
    assert bad.status_code == 404 and bad.json()["code"] == "site_not_found"


def test_one_log_line_per_invocation(stack):
    visitor = stack.visitor()
    ws = ChatClient(stack.ws_url(visitor["token"]), origin=stack.base)
    ws.request({"action": "ping"})
    ws.close()
    wait_until(lambda: any("$disconnect" in line for line in stack.lines))
    assert any("$default" in line and "ms" in line for line in stack.lines)
    assert any("POST /v1/visitor/session" in line for line in stack.lines)


def test_visitor_uploads_an_image_and_the_agent_gets_a_signed_link(stack):
    agent, agent_ws, visitor, visitor_ws = _pair(stack)
    cid = visitor["conversation_id"]
    image = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4
    grant = stack.rest("POST", "/v1/uploads", token=visitor["token"], json={
        "conversation_id": cid, "file_name": "cat picture.png", "content_type": "image/png", "size": len(image)})
    assert grant.status_code == 200, grant.text
    grant = grant.json()
    upload = requests.post(grant["url"], data=grant["fields"],
                           files={"file": ("cat.png", image, "image/png")}, timeout=10)
    assert upload.status_code == 201, upload.text
    attachment = {"key": grant["key"], "name": "cat picture.png", "size": len(image), "content_type": "image/png"}
    refused = visitor_ws.request({"action": "send", "conversation_id": cid, "client_msg_id": "img1",
                                  "attachment": attachment})
    assert refused["code"] == "attachment_via_rest"  # only the REST function attaches uploads
    ack = stack.rest("POST", f"/v1/conversations/{cid}/messages", token=visitor["token"],
                     json={"client_msg_id": "img1", "attachment": attachment})
    assert ack.status_code == 200 and ack.json()["type"] == "ack", ack.text
    message = agent_ws.wait_type("message", conversation_id=cid)
    assert message["attachment"]["name"] == "cat picture.png" and message["attachment"]["size"] == len(image)
    assert "url" not in message["attachment"]  # signed by the REST route, never on the WebSocket path
    fresh = stack.rest("GET", f"/v1/conversations/{cid}/attachments/url", token=agent["token"],
                       params={"key": message["attachment"]["key"]})
    assert requests.get(fresh.json()["url"], timeout=10).content == image


def test_upload_refusals_over_http(stack):
    visitor = stack.visitor()
    other = stack.visitor()
    cid = visitor["conversation_id"]
    cases = [
        ({"conversation_id": cid, "file_name": "a.exe", "content_type": "application/x-msdownload", "size": 10},
         415, "upload_type_not_allowed"),
        ({"conversation_id": cid, "file_name": "a.png", "content_type": "image/png", "size": 10**9},
         413, "upload_too_large"),
        ({"conversation_id": other["conversation_id"], "file_name": "a.png", "content_type": "image/png", "size": 10},
         403, "not_in_conversation"),
        ({"conversation_id": cid, "file_name": "a.png", "content_type": "image/png", "size": "10"},
         400, "invalid_size"),
    ]
    for body, status, code in cases:
        response = stack.rest("POST", "/v1/uploads", token=visitor["token"], json=body)
        assert (response.status_code, response.json()["code"]) == (status, code), body
    grant = stack.rest("POST", "/v1/uploads", token=visitor["token"], json={
        "conversation_id": cid, "file_name": "a.png", "content_type": "image/png", "size": 10}).json()
    messages = f"/v1/conversations/{cid}/messages"
    not_uploaded = stack.rest("POST", messages, token=visitor["token"], json={"client_msg_id": "n1", "attachment": {
        "key": grant["key"], "name": "a.png", "size": 10, "content_type": "image/png"}})
    assert (not_uploaded.status_code, not_uploaded.json()["code"]) == (400, "attachment_not_uploaded")
    forged = stack.rest("POST", messages, token=visitor["token"], json={"client_msg_id": "n2", "attachment": {
        "key": "uploads/demo/elsewhere/0123456789abcdef/a.png", "name": "a.png", "size": 10,
        "content_type": "image/png"}})
    assert (forged.status_code, forged.json()["code"]) == (403, "attachment_not_granted")
