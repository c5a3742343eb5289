"""Every malformed input is a typed 4xx (issue 12): property-based fuzzing of every REST body and
WebSocket frame. No 5xx, no `internal_error`, the socket stays open, and a refused input stores
nothing."""
from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chalicelib import protocol
from chalicelib.models import Connection, Message

pytestmark = pytest.mark.timeout(300)

FUZZ = settings(max_examples=120, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])

scalars = (st.none() | st.booleans() | st.integers(min_value=-(2 ** 70), max_value=2 ** 70)
           | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=40)
           | st.sampled_from(["", "\u202e", "\ud800", "🙂", "紫砂茶壶", "x" * 5000, "-1", "0"]))
json_values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4)
                           | st.dictionaries(st.text(max_size=8), inner, max_size=4), max_leaves=12)

ACTIONS = sorted(protocol.ACTIONS) + ["", "nope", "$default"]
FIELDS = ["conversation_id", "client_msg_id", "text", "after_seq", "limit", "seq", "is_typing", "url",
          "title", "referrer", "include_closed", "cursor", "agent_id", "req"]


def _deep(levels: int) -> str:
    return "[" * levels + "]" * levels


raw_bodies = (st.text(max_size=60) | st.sampled_from([_deep(5000), '{"a": NaN}', '{"a": Infinity}',
                                                      '"\\ud800"', "[1,", "{}", "[]", "null", "1e999"]))


@st.composite
def frames(draw, conversation_id: str):
    frame = {"action": draw(st.sampled_from(ACTIONS) | json_values)}
    for name in draw(st.lists(st.sampled_from(FIELDS), max_size=5, unique=True)):
        frame[name] = draw(json_values | st.just(conversation_id) | st.integers(0, 3))
    return frame


@pytest.fixture
def fuzz_chat(harness):
    return harness.chat()


def _assert_typed(reply):
    assert reply.get("type") != "error" or (reply["code"] != "internal_error" and reply["code"]), reply


@FUZZ
@given(data=st.data())
def test_websocket_frames_never_break(harness, fuzz_chat, data):
    site, agent, agent_conn, visitor, visitor_conn = fuzz_chat
    cid = visitor["conversation_id"]
    conn = data.draw(st.sampled_from([visitor_conn, agent_conn]))
    before = Message.count(cid)
    if data.draw(st.booleans()):
        body = data.draw(raw_bodies)
    else:
        body = json.dumps(data.draw(frames(cid)), allow_nan=True)
    protocol._recent_sends.clear()
    replies = harness.frame(conn, body)
    for reply in replies:
        _assert_typed(reply)
    if any(r.get("type") == "error" for r in replies):
        assert Message.count(cid) == before  # refused: nothing stored
    assert Connection.count(conn) == 1 and conn not in harness.mgmt.deleted  # the socket stays open


rest_bodies = st.dictionaries(st.sampled_from(["site_id", "visitor_id", "user_id", "user_hash", "name", "attributes",
                                               "email", "password", "client_msg_id", "text", "file_name",
                                               "content_type", "size", "conversation_id"]),
                              json_values, max_size=6)


@FUZZ
@given(data=st.data())
def test_rest_bodies_never_break(harness, fuzz_chat, data):
    site, agent, agent_conn, visitor, visitor_conn = fuzz_chat
    cid = visitor["conversation_id"]
    route = data.draw(st.sampled_from(["/v1/visitor/session", "/v1/agent/session",
                                       f"/v1/conversations/{cid}/messages", "/v1/uploads"]))
    if data.draw(st.booleans()):
        body = data.draw(raw_bodies)
    else:
        fields = data.draw(rest_bodies)
        if data.draw(st.booleans()):
            fields["site_id"] = site.site_id
        body = json.dumps(fields, allow_nan=True)
    token = data.draw(st.sampled_from([visitor["token"], agent["token"], None, "garbage"]))
    before = Message.count(cid)
    response = harness.rest("POST", route, body, token=token, headers={"Origin": "https://shop.example"})
    assert response.status_code < 500 or response.json_body["code"] == "uploads_not_configured", response.json_body
    if response.status_code >= 400:
        assert response.json_body["code"] and Message.count(cid) == before


@FUZZ
@given(params=st.dictionaries(st.sampled_from(["after_seq", "limit", "cursor", "include_closed", "key"]),
                              st.text(max_size=30) | st.integers(-10, 10 ** 30).map(str), max_size=3))
def test_rest_queries_never_break(harness, fuzz_chat, params):
    from urllib.parse import urlencode

    site, agent, agent_conn, visitor, visitor_conn = fuzz_chat
    cid = visitor["conversation_id"]
    for path, token in ((f"/v1/conversations/{cid}/messages", visitor["token"]),
                        ("/v1/conversations", agent["token"])):
        response = harness.rest("GET", f"{path}?{urlencode(params)}", token=token)
        assert response.status_code < 500, response.json_body
