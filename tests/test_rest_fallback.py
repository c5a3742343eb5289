"""The socket's visitor actions over REST (docs/protocol.md, section 4): a browser that cannot keep a
WebSocket still reads the chat's state, sends read receipts and typing, and rates the chat; its
messages page carries the status and read marks that a socket would have pushed."""
from __future__ import annotations

import pytest

from chalicelib.models import Conversation


def _polling_visitor(harness):
    """A site with an agent on a socket and a visitor who wrote once over REST and has no socket."""
    site = harness.site()
    agent = harness.agent(site.site_id)
    agent_conn, _ = harness.connect(agent["token"])
    visitor = harness.visitor(site.site_id)
    harness.say(visitor)
    harness.mgmt.take(agent_conn)
    return agent, agent_conn, visitor


def _path(visitor, tail: str) -> str:
    return f"/v1/conversations/{visitor['conversation_id']}/{tail}"


def test_state_over_rest_is_the_state_frame_without_a_connection(harness):
    agent, agent_conn, visitor = _polling_visitor(harness)
    response = harness.rest("GET", "/v1/state", token=visitor["token"])
    assert response.status_code == 200, response.json_body
    state = response.json_body
    assert state["type"] == "state" and state["role"] == "visitor" and state["connection_id"] is None
    assert state["agents_online"] == [agent["agent_id"]]
    assert state["conversation"]["conversation_id"] == visitor["conversation_id"]
    assert state["conversation"]["status"] == "assigned"
    assert "labels" not in state["conversation"]  # the visitor's view, as on the socket

    harness.disconnect(agent_conn)
    assert harness.rest("GET", "/v1/state", token=visitor["token"]).json_body["agents_online"] == []

    assert harness.rest("GET", "/v1/state").status_code == 401
    assert harness.rest("GET", "/v1/state", token=visitor["token"] + "x").json_body["code"] == "token_invalid"


def test_a_read_receipt_over_rest_reaches_the_agent_and_moves_the_mark_once(harness):
    agent, agent_conn, visitor = _polling_visitor(harness)
    harness.reply(agent_conn, {"action": "send", "conversation_id": visitor["conversation_id"],
                               "client_msg_id": "a1", "text": "你好，有什么可以帮您？"})
    harness.mgmt.take(agent_conn)

    response = harness.rest("POST", _path(visitor, "read"), {"seq": 2, "req": "ignored"}, token=visitor["token"])
    assert response.status_code == 200, response.json_body
    assert response.json_body == {"type": "read", "conversation_id": visitor["conversation_id"], "seq": 2,
                                  "by": {"role": "visitor", "id": visitor["visitor_id"]}}
    assert [f["seq"] for f in harness.mgmt.of_type(agent_conn, "read")] == [2]
    assert Conversation.get(visitor["conversation_id"]).visitor_read_seq == 2

    # the same receipt again (a second tab, a retried request): answered, not pushed again
    harness.mgmt.take(agent_conn)
    assert harness.rest("POST", _path(visitor, "read"), {"seq": 2}, token=visitor["token"]).status_code == 200
    assert harness.mgmt.of_type(agent_conn, "read") == []


@pytest.mark.parametrize("body,status,code", [
    ({"seq": 3}, 400, "seq_out_of_range"),
    ({"seq": -1}, 400, "invalid_seq"),
    ({"seq": "1"}, 400, "invalid_seq"),
    ({}, 400, "invalid_seq"),
])
def test_bad_read_receipts_over_rest_are_refused_and_change_nothing(harness, body, status, code):
    agent, agent_conn, visitor = _polling_visitor(harness)
    response = harness.rest("POST", _path(visitor, "read"), body, token=visitor["token"])
    assert (response.status_code, response.json_body["code"]) == (status, code)
    assert Conversation.get(visitor["conversation_id"]).visitor_read_seq in (None, 0)
    assert harness.mgmt.of_type(agent_conn, "read") == []


def test_a_visitor_cannot_act_on_another_conversation_over_rest(harness):
    agent, agent_conn, visitor = _polling_visitor(harness)
    other = harness.visitor(harness.site().site_id)  # another site's visitor
    harness.say(other)
    for tail, body in (("read", {"seq": 1}), ("typing", {"is_typing": True}), ("rating", {"rating": 5})):
        response = harness.rest("POST", _path(visitor, tail), body, token=other["token"])
        assert (response.status_code, response.json_body["code"]) == (403, "not_in_conversation"), tail
    assert harness.mgmt.frames.get(agent_conn, []) == []
    assert Conversation.get(visitor["conversation_id"]).rating is None


def test_typing_over_rest_reaches_the_agent_and_answers_no_content(harness):
    agent, agent_conn, visitor = _polling_visitor(harness)
    response = harness.rest("POST", _path(visitor, "typing"), {"is_typing": True}, token=visitor["token"])
    assert response.status_code == 204 and not response.body
    typing = harness.mgmt.of_type(agent_conn, "typing")
    assert [(f["is_typing"], f["from"]["role"]) for f in typing] == [(True, "visitor")]

    bad = harness.rest("POST", _path(visitor, "typing"), {"is_typing": "yes"}, token=visitor["token"])
    assert (bad.status_code, bad.json_body["code"]) == (400, "invalid_is_typing")
    not_json = harness.rest("POST", _path(visitor, "typing"), "[1]", token=visitor["token"])
    assert (not_json.status_code, not_json.json_body["code"]) == (400, "invalid_body")


@pytest.fixture
def typing_limit(monkeypatch):
    from chalicelib.config import settings

    monkeypatch.setenv("KEFU_TYPING_LIMIT", "4")
    settings.cache_clear()
    return 4


def test_typing_over_rest_has_the_sockets_limit(harness, timeline, typing_limit):
    agent, agent_conn, visitor = _polling_visitor(harness)
    allowed = typing_limit
    answers = [harness.rest("POST", _path(visitor, "typing"), {"is_typing": True}, token=visitor["token"])
               for _ in range(allowed + 2)]
    assert [a.status_code for a in answers] == [204] * allowed + [429, 429]
    assert answers[-1].json_body["code"] == "rate_limited"
    assert len(harness.mgmt.of_type(agent_conn, "typing")) == allowed


def test_a_closed_chat_is_rated_over_rest_once(harness):
    agent, agent_conn, visitor = _polling_visitor(harness)
    cid = visitor["conversation_id"]
    early = harness.rest("POST", _path(visitor, "rating"), {"rating": 5}, token=visitor["token"])
    assert (early.status_code, early.json_body["code"]) == (409, "conversation_not_closed")
    harness.reply(agent_conn, {"action": "close", "conversation_id": cid})

    for body, code in (({"rating": 6}, "invalid_rating"), ({"rating": True}, "invalid_rating"),
                       ({"rating": 4, "comment": 3}, "invalid_comment")):
        response = harness.rest("POST", _path(visitor, "rating"), body, token=visitor["token"])
        assert (response.status_code, response.json_body["code"]) == (400, code)
    by_agent = harness.rest("POST", _path(visitor, "rating"), {"rating": 1}, token=agent["token"])
    assert (by_agent.status_code, by_agent.json_body["code"]) == (403, "visitors_only")

    rated = harness.rest("POST", _path(visitor, "rating"), {"rating": 4, "comment": "很快就解决了"},
                         token=visitor["token"])
    assert rated.status_code == 200, rated.json_body
    assert rated.json_body["conversation"]["rating"]["score"] == 4
    again = harness.rest("POST", _path(visitor, "rating"), {"rating": 1}, token=visitor["token"])
    assert (again.status_code, again.json_body["code"]) == (409, "already_rated")
    stored = Conversation.get(cid)
    assert (stored.rating, stored.rating_comment) == (4, "很快就解决了")


def test_the_messages_page_carries_the_status_and_both_read_marks(harness):
    agent, agent_conn, visitor = _polling_visitor(harness)
    cid = visitor["conversation_id"]
    page = harness.rest("GET", _path(visitor, "messages?after_seq=0"), token=visitor["token"]).json_body
    assert (page["status"], page["visitor_read_seq"], page["agent_read_seq"]) == ("assigned", 0, 0)

    harness.reply(agent_conn, {"action": "read", "conversation_id": cid, "seq": 1})
    harness.reply(agent_conn, {"action": "close", "conversation_id": cid})
    page = harness.rest("GET", _path(visitor, "messages?after_seq=1"), token=visitor["token"]).json_body
    assert (page["status"], page["agent_read_seq"], page["messages"]) == ("closed", 1, [])

    # the same fields over the socket, for an agent too
    reply = harness.reply(agent_conn, {"action": "sync", "conversation_id": cid, "after_seq": 0})
    assert (reply["status"], reply["agent_read_seq"], len(reply["messages"])) == ("closed", 1, 1)


def test_a_silent_visitors_page_says_queued_with_no_marks(harness):
    site = harness.site()
    visitor = harness.visitor(site.site_id)
    page = harness.rest("GET", _path(visitor, "messages?after_seq=0"), token=visitor["token"]).json_body
    assert (page["status"], page["visitor_read_seq"], page["agent_read_seq"], page["last_seq"]) == (
        "queued", 0, 0, 0)
    state = harness.rest("GET", "/v1/state", token=visitor["token"]).json_body
    assert state["conversation"]["status"] == "queued" and state["agents_online"] == []


def test_the_routes_answer_any_site_origin_as_the_messages_route_does(harness):
    agent, agent_conn, visitor = _polling_visitor(harness)
    response = harness.rest("GET", "/v1/state", token=visitor["token"], headers={"Origin": "https://shop.example"})
    assert response.headers.get("Access-Control-Allow-Origin") == "*"
