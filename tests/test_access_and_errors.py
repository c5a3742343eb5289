"""Who may do what, and a typed error for every kind of bad input (nothing stored, socket kept)."""
from __future__ import annotations

import json

import jwt
import pytest

from chalicelib import sites, tokens
from chalicelib.config import settings
from chalicelib.models import Message


@pytest.fixture
def chat(harness):
    return harness.chat()


def _forged(claims_update, secret=None):
    now = int(__import__("time").time())
    claims = {"iss": "kefu", "role": "agent", "site": "s", "sub": "x", "iat": now, "exp": now + 60}
    claims.update(claims_update)
    return jwt.encode(claims, secret or settings().token_secret, algorithm="HS256")


def test_connect_refuses_missing_forged_expired_tokens(harness):
    site = harness.site()
    assert harness.connect(None)[1] == 401
    assert harness.connect("not-a-token")[1] == 401
    assert harness.connect(_forged({"site": site.site_id}, secret="someone-elses-secret-0123456789abcdef"))[1] == 401
    assert harness.connect(_forged({"site": site.site_id, "iat": 1, "exp": 2}))[1] == 401


def test_connect_refuses_unknown_site_and_foreign_origin(harness):
    site = harness.site()
    visitor = harness.visitor(site.site_id)
    assert harness.connect(visitor["token"], origin="https://evil.example")[1] == 403
    assert harness.connect(_forged({"site": "site_nope", "role": "visitor", "cid": "c"}))[1] == 404
    assert harness.connect(visitor["token"], origin="https://shop.example")[1] == 200


def test_visitor_session_refuses_foreign_origin(harness):
    site = harness.site()
    response = harness.rest("POST", "/v1/visitor/session", {"site_id": site.site_id},
                            headers={"Origin": "https://evil.example"})
    assert response.status_code == 403 and response.json_body["code"] == "origin_not_allowed"


def test_identity_verification_hmac(harness):
    site = harness.site()
    good = sites.identity_hash(site.secret, "user-42")
    ok = harness.visitor(site.site_id, user_id="user-42", user_hash=good)
    assert ok["visitor_id"] == "u_user-42"
    for fields, code in [({"user_id": "user-42"}, "identity_hash_required"),
                         ({"user_id": "user-42", "user_hash": "0" * 64}, "identity_hash_invalid"),
                         ({"user_id": "user-43", "user_hash": good}, "identity_hash_invalid")]:
        response = harness.rest("POST", "/v1/visitor/session", {"site_id": site.site_id, **fields},
                                headers={"Origin": "https://shop.example"})
        assert response.status_code == 403 and response.json_body["code"] == code
    # an anonymous visitor cannot claim a verified user's id
    response = harness.rest("POST", "/v1/visitor/session", {"site_id": site.site_id, "visitor_id": "u_user-42"},
                            headers={"Origin": "https://shop.example"})
    assert response.status_code == 400 and response.json_body["code"] == "invalid_visitor_id"


def test_agent_login_refuses_wrong_password(harness):
    site = harness.site()
    harness.agent(site.site_id, email="bo@shop.example", password="right password")
    for email, password in [("bo@shop.example", "wrong password"), ("nobody@shop.example", "right password")]:
        response = harness.rest("POST", "/v1/agent/session",
                                {"site_id": site.site_id, "email": email, "password": password})
        assert response.status_code == 401 and response.json_body["code"] == "invalid_credentials"


def test_visitor_cannot_touch_another_conversation(harness, chat):
    site, agent, agent_conn, visitor, visitor_conn = chat
    other = harness.visitor(site.site_id)
    for frame in [{"action": "send", "conversation_id": other["conversation_id"], "client_msg_id": "c1", "text": "hi"},
                  {"action": "sync", "conversation_id": other["conversation_id"], "after_seq": 0},
                  {"action": "read", "conversation_id": other["conversation_id"], "seq": 0}]:
        reply = harness.reply(visitor_conn, frame)
        assert reply["type"] == "error" and reply["code"] == "not_in_conversation"
    response = harness.rest("GET", f"/v1/conversations/{other['conversation_id']}/messages", token=visitor["token"])
    assert response.status_code == 403
    assert Message.count(other["conversation_id"]) == 0


def test_agent_cannot_touch_another_sites_conversation(harness, chat):
    site, agent, agent_conn, visitor, visitor_conn = chat
    other_site = harness.site(origins=["https://other.example"])
    foreign = harness.visitor(other_site.site_id, origin="https://other.example")
    harness.say(visitor)
    for frame in [{"action": "send", "conversation_id": foreign["conversation_id"], "client_msg_id": "c1", "text": "hi"},
                  {"action": "sync", "conversation_id": foreign["conversation_id"], "after_seq": 0},
                  {"action": "claim", "conversation_id": foreign["conversation_id"]}]:
        reply = harness.reply(agent_conn, frame)
        assert reply["type"] == "error" and reply["code"] == "conversation_not_found", reply
    assert Message.count(foreign["conversation_id"]) == 0
    listing = harness.rest("GET", "/v1/conversations", token=agent["token"]).json_body
    assert {c["site_id"] for c in listing["conversations"]} == {site.site_id}


def test_visitor_cannot_use_agent_actions(harness, chat):
    site, agent, agent_conn, visitor, visitor_conn = chat
    for action in ("claim", "close", "transfer", "list"):
        reply = harness.reply(visitor_conn, {"action": action, "conversation_id": visitor["conversation_id"]})
        assert reply["code"] == "agents_only"
    assert harness.rest("GET", "/v1/conversations", token=visitor["token"]).status_code == 403


BAD_FRAMES = [
    ("{not json", "invalid_json"),
    ("[1, 2]", "invalid_frame"),
    ({"req": 1}, "missing_action"),
    ({"action": "dance"}, "unknown_action"),
    ({"action": 5}, "unknown_action"),
    ({"action": "send", "client_msg_id": "c1", "text": "x"}, "invalid_conversation_id"),
    ({"action": "send", "conversation_id": "CID", "text": "x"}, "invalid_client_msg_id"),
    ({"action": "send", "conversation_id": "CID", "client_msg_id": "has space", "text": "x"}, "invalid_client_msg_id"),
    ({"action": "send", "conversation_id": "CID", "client_msg_id": "c1", "text": 5}, "invalid_text"),
    ({"action": "send", "conversation_id": "CID", "client_msg_id": "c1", "text": "   "}, "empty_message"),
    ({"action": "send", "conversation_id": "CID", "client_msg_id": "c1"}, "empty_message"),
    ({"action": "send", "conversation_id": "CID", "client_msg_id": "c1", "text": "x" * 4001}, "text_too_long"),
    ({"action": "send", "conversation_id": "CID", "client_msg_id": "c1", "attachment": "nope"}, "invalid_attachment"),
    ({"action": "sync", "conversation_id": "CID", "after_seq": "3"}, "invalid_after_seq"),
    ({"action": "sync", "conversation_id": "CID", "after_seq": -1}, "seq_out_of_range"),
    ({"action": "sync", "conversation_id": "CID", "after_seq": 99}, "seq_out_of_range"),
    ({"action": "sync", "conversation_id": "CID", "after_seq": 0, "limit": 0}, "invalid_limit"),
    ({"action": "read", "conversation_id": "CID", "seq": 99}, "seq_out_of_range"),
    ({"action": "read", "conversation_id": "CID", "seq": "1"}, "invalid_seq"),
    ({"action": "typing", "conversation_id": "CID", "is_typing": "yes"}, "invalid_is_typing"),
    ({"action": "page_view", "url": 7}, "invalid_url"),
    ({"action": "send", "conversation_id": "CID", "client_msg_id": "c1", "text": "y" * (130 * 1024)}, "frame_too_large"),
]


@pytest.mark.parametrize("frame,code", BAD_FRAMES, ids=[c for _, c in BAD_FRAMES])
def test_bad_frames_get_typed_errors_and_store_nothing(harness, chat, frame, code):
    site, agent, agent_conn, visitor, visitor_conn = chat
    cid = visitor["conversation_id"]
    body = frame if isinstance(frame, str) else json.dumps(frame).replace("CID", cid)
    reply = harness.reply(visitor_conn, body)
    assert reply["type"] == "error" and reply["code"] == code, reply
    assert Message.count(cid) == 0
    # the connection stays usable
    ok = harness.reply(visitor_conn, {"action": "send", "conversation_id": cid, "client_msg_id": "ok1", "text": "fine"})
    assert ok["type"] == "ack" and ok["seq"] == 1


def test_error_frames_echo_req(harness, chat):
    reply = harness.reply(chat[4], {"action": "dance", "req": "abc"})
    assert reply == {"type": "error", "code": "unknown_action", "message": reply["message"], "req": "abc"}


def test_rate_limit_per_connection(harness, chat, timeline):  # the clock held: one rate window
    site, agent, agent_conn, visitor, visitor_conn = chat
    cid = visitor["conversation_id"]
    codes = [harness.reply(visitor_conn, {"action": "send", "conversation_id": cid, "client_msg_id": f"r{i}",
                                          "text": "spam"})["type"] for i in range(settings().rate_limit + 3)]
    assert codes.count("ack") == settings().rate_limit
    assert Message.count(cid) == settings().rate_limit


def test_oversize_custom_attributes_refused(harness):
    site = harness.site()
    response = harness.rest("POST", "/v1/visitor/session",
                            {"site_id": site.site_id, "attributes": {"blob": "x" * 5000}},
                            headers={"Origin": "https://shop.example"})
    assert response.status_code == 413 and response.json_body["code"] == "attributes_too_large"


def test_rest_requires_a_valid_bearer_token(harness, chat):
    cid = chat[3]["conversation_id"]
    assert harness.rest("GET", f"/v1/conversations/{cid}/messages").json_body["code"] == "token_missing"
    expired, _ = tokens.issue(tokens.Identity("visitor", chat[0].site_id, "v", cid), -10)
    response = harness.rest("GET", f"/v1/conversations/{cid}/messages", token=expired)
    assert response.status_code == 401 and response.json_body["code"] == "token_expired"


def test_agent_sending_into_closed_conversation_refused(harness):
    site, agent, agent_conn, visitor, visitor_conn = harness.chat(opened=True)
    cid = visitor["conversation_id"]
    closed = harness.reply(agent_conn, {"action": "close", "conversation_id": cid})
    assert closed["conversation"]["status"] == "closed"
    reply = harness.reply(agent_conn, {"action": "send", "conversation_id": cid, "client_msg_id": "c9", "text": "hi"})
    assert reply["code"] == "conversation_closed"
    assert Message.count(cid) == 1  # the visitor's first message only
    # the next visit opens a new conversation
    again = harness.visitor(site.site_id, visitor_id=visitor["visitor_id"])
    assert again["conversation_id"] != cid
