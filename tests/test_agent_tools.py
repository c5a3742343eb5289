"""The agents' tools of issue 16: internal notes, labels, away status, auto-close, ratings, canned
responses and reports, driven through the Lambda entry points (tests/support.py)."""
from __future__ import annotations

import datetime

import pytest

from chalicelib import conversations, sweep
from chalicelib.config import settings
from chalicelib.models import Conversation, Message


def _send(harness, conn, cid, client_msg_id, text="hi", **extra):
    return harness.reply(conn, {"action": "send", "conversation_id": cid, "client_msg_id": client_msg_id,
                                "text": text, **extra})


def _today():
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d")


# ---- internal notes ------------------------------------------------------------------------

def test_a_note_reaches_agents_only_never_the_visitor(harness):
    site, agent, agent_conn, visitor, visitor_conn = harness.chat(opened=True)
    cid = visitor["conversation_id"]
    colleague = harness.agent(site.site_id, "bo@shop.example")
    colleague_conn, _ = harness.connect(colleague["token"])
    harness.mgmt.take(visitor_conn)
    harness.mgmt.take(colleague_conn)

    ack = _send(harness, agent_conn, cid, "n1", "VIP: refund without asking", note=True)
    assert ack["type"] == "ack" and ack["seq"] == 2
    _send(harness, agent_conn, cid, "r1", "Hello! How can I help?")

    # push: the colleague gets the note (marked), the visitor only the reply
    pushed = harness.mgmt.of_type(colleague_conn, "message")
    assert [(m["text"], m.get("note")) for m in pushed] == [("VIP: refund without asking", True),
                                                           ("Hello! How can I help?", None)]
    assert [m["text"] for m in harness.mgmt.of_type(visitor_conn, "message")] == ["Hello! How can I help?"]
    # the visitor's sync: the note's seq is a gap, never its text
    page = harness.reply(visitor_conn, {"action": "sync", "conversation_id": cid, "after_seq": 0})
    assert [m["seq"] for m in page["messages"]] == [1, 3] and page["gaps"] == [2]
    assert "refund" not in str(page)
    # REST GET messages as the visitor: the same
    rest = harness.rest("GET", f"/v1/conversations/{cid}/messages", token=visitor["token"]).json_body
    assert [m["seq"] for m in rest["messages"]] == [1, 3] and rest["gaps"] == [2] and "refund" not in str(rest)
    # the agents' sync holds it
    theirs = harness.reply(agent_conn, {"action": "sync", "conversation_id": cid, "after_seq": 0})
    assert [(m["seq"], m.get("note")) for m in theirs["messages"]] == [(1, None), (2, True), (3, None)]
    # the preview the visitor sees is never the note
    state = harness.reply(visitor_conn, {"action": "state"})
    assert state["conversation"]["last_text"] == "Hello! How can I help?"
    assert "refund" not in str(harness.mgmt.frames.get(visitor_conn, []))


def test_a_note_from_a_visitor_is_refused(harness):
    site, agent, agent_conn, visitor, visitor_conn = harness.chat(opened=True)
    cid = visitor["conversation_id"]
    reply = _send(harness, visitor_conn, cid, "v-note", "let me in", note=True)
    assert reply["type"] == "error" and reply["code"] == "agents_only"
    rest = harness.rest("POST", f"/v1/conversations/{cid}/messages", {"client_msg_id": "v2", "text": "x", "note": True},
                        token=visitor["token"])
    assert rest.status_code == 403 and rest.json_body["code"] == "agents_only"
    assert Message.count(cid) == 1  # nothing stored


def test_an_agent_writes_a_note_over_rest_and_its_retry_cannot_turn_it_into_a_reply(harness):
    site, agent, agent_conn, visitor, visitor_conn = harness.chat(opened=True)
    cid = visitor["conversation_id"]
    harness.mgmt.take(visitor_conn)
    body = {"client_msg_id": "rest-note", "text": "called them back", "note": True}
    first = harness.rest("POST", f"/v1/conversations/{cid}/messages", body, token=agent["token"])
    assert first.status_code == 200 and first.json_body["seq"] == 2
    again = harness.rest("POST", f"/v1/conversations/{cid}/messages", body, token=agent["token"])
    assert again.json_body["duplicate"] is True
    as_reply = harness.rest("POST", f"/v1/conversations/{cid}/messages", {**body, "note": False}, token=agent["token"])
    assert as_reply.status_code == 409 and as_reply.json_body["code"] == "client_msg_id_conflict"
    assert harness.mgmt.take(visitor_conn) == []


def test_a_bad_note_flag_is_refused(harness):
    site, agent, agent_conn, visitor, visitor_conn = harness.chat(opened=True)
    reply = _send(harness, agent_conn, visitor["conversation_id"], "n", "x", note="yes")
    assert reply["code"] == "invalid_note"


# ---- labels --------------------------------------------------------------------------------

def test_labels_are_added_removed_and_never_shown_to_the_visitor(harness):
    site, agent, agent_conn, visitor, visitor_conn = harness.chat(opened=True)
    cid = visitor["conversation_id"]
    harness.mgmt.take(visitor_conn)
    reply = harness.reply(agent_conn, {"action": "label", "conversation_id": cid, "add": ["  VIP ", "Refund"]})
    assert reply["type"] == "conversation" and reply["event"] == "labeled"
    assert reply["conversation"]["labels"] == ["refund", "vip"]
    reply = harness.reply(agent_conn, {"action": "label", "conversation_id": cid, "remove": ["refund"]})
    assert reply["conversation"]["labels"] == ["vip"]
    listed = harness.reply(agent_conn, {"action": "list"})["conversations"]
    assert listed[0]["labels"] == ["vip"]
    assert harness.mgmt.take(visitor_conn) == []  # no labeled event for the visitor
    state = harness.reply(visitor_conn, {"action": "state"})
    assert "labels" not in state["conversation"]


@pytest.mark.parametrize("frame,code", [
    ({"add": [""]}, "invalid_label"),
    ({"add": ["x" * 31]}, "invalid_label"),
    ({"add": [42]}, "invalid_label"),
    ({"add": "vip"}, "invalid_label"),
    ({"add": ["a\u0000b"]}, "invalid_label"),
    ({}, "invalid_label"),
])
def test_bad_labels_are_refused(harness, frame, code):
    site, agent, agent_conn, visitor, visitor_conn = harness.chat(opened=True)
    reply = harness.reply(agent_conn, {"action": "label", "conversation_id": visitor["conversation_id"], **frame})
    assert reply["type"] == "error" and reply["code"] == code
    assert Conversation.get(visitor["conversation_id"]).labels is None


def test_too_many_labels_are_refused(harness):
    site, agent, agent_conn, visitor, visitor_conn = harness.chat(opened=True)
    cid = visitor["conversation_id"]
    harness.reply(agent_conn, {"action": "label", "conversation_id": cid, "add": [f"l{i}" for i in range(9)]})
    reply = harness.reply(agent_conn, {"action": "label", "conversation_id": cid, "add": ["ten", "eleven"]})
    assert reply["code"] == "too_many_labels"
    assert len(Conversation.get(cid).labels) == 9
    assert harness.reply(agent_conn, {"action": "label", "conversation_id": cid, "add": ["ten"]})["type"] == "conversation"
    # a label already there is no new one
    assert harness.reply(agent_conn, {"action": "label", "conversation_id": cid, "add": ["l1"]})["type"] == "conversation"
    assert len(Conversation.get(cid).labels) == 10


def test_visitors_cannot_label(harness):
    site, agent, agent_conn, visitor, visitor_conn = harness.chat(opened=True)
    reply = harness.reply(visitor_conn, {"action": "label", "conversation_id": visitor["conversation_id"], "add": ["x"]})
    assert reply["code"] == "agents_only"


# ---- status: online / away -----------------------------------------------------------------

def test_an_away_agent_gets_no_new_conversation(harness):
    site = harness.site()
    ann = harness.agent(site.site_id, "ann@shop.example")
    bo = harness.agent(site.site_id, "bo@shop.example")
    ann_conn, _ = harness.connect(ann["token"])
    bo_conn, _ = harness.connect(bo["token"])
    harness.mgmt.take(bo_conn)
    assert harness.reply(ann_conn, {"action": "status", "status": "away"}) == {"type": "status", "status": "away"}
    presence = harness.mgmt.of_type(bo_conn, "presence")
    assert presence[-1]["id"] == ann["agent_id"] and presence[-1]["availability"] == "away"
    for i in range(3):  # with loads equal, ann (sorted first) would get one
        harness.say(harness.visitor(site.site_id), client_msg_id=f"m{i}")
    assert conversations.agent_loads(site.site_id) == {bo["agent_id"]: 3}
    state = harness.reply(bo_conn, {"action": "state"})
    names = {a["agent_id"]: (a["name"], a["availability"], a["online"]) for a in state["agents"]}
    assert names == {ann["agent_id"]: ("Ann", "away", True), bo["agent_id"]: ("Bo", "online", True)}
    # away outlasts a reload: back, Ann is still away, and Bo is told so
    harness.disconnect(ann_conn)
    harness.mgmt.take(bo_conn)
    harness.connect(ann["token"])
    assert harness.mgmt.of_type(bo_conn, "presence")[-1]["availability"] == "away"
    harness.say(harness.visitor(site.site_id), client_msg_id="m9")
    assert conversations.agent_loads(site.site_id) == {bo["agent_id"]: 4}


def test_when_everyone_is_away_conversations_wait_and_are_handed_out_on_return(harness):
    site = harness.site()
    ann = harness.agent(site.site_id)
    conn, _ = harness.connect(ann["token"])
    harness.reply(conn, {"action": "status", "status": "away"})
    visitor = harness.visitor(site.site_id)
    harness.say(visitor)
    assert Conversation.get(visitor["conversation_id"]).status == "queued"
    frames = harness.frame(conn, {"action": "status", "status": "online"})
    assert [f["type"] for f in frames] == ["conversation", "status"] and frames[0]["event"] == "assigned"
    assert Conversation.get(visitor["conversation_id"]).agent_id == ann["agent_id"]
    assert harness.reply(conn, {"action": "state"})["status"] == "online"


def test_a_bad_status_is_refused(harness):
    site, agent, agent_conn, visitor, visitor_conn = harness.chat()
    assert harness.reply(agent_conn, {"action": "status", "status": "busy"})["code"] == "invalid_status"
    assert harness.reply(visitor_conn, {"action": "status", "status": "away"})["code"] == "agents_only"


# ---- auto-close ----------------------------------------------------------------------------

def test_an_idle_conversation_auto_closes_and_the_agents_load_drops(harness, timeline):
    site = harness.site()
    agent = harness.agent(site.site_id)
    agent_conn, _ = harness.connect(agent["token"])
    idle, busy = harness.visitor(site.site_id), harness.visitor(site.site_id)
    harness.say(idle)
    harness.say(busy)
    assert conversations.agent_loads(site.site_id) == {agent["agent_id"]: 2}
    hours = settings().auto_close_hours
    timeline(hours * 3600 - 600)
    harness.say(busy, "still there?", "m2")  # busy gets a message 10 minutes before the deadline
    timeline(601)
    harness.reply(agent_conn, {"action": "ping"})  # the agent is still here
    harness.mgmt.take(agent_conn)
    report = sweep.sweep()
    assert report.autoclosed == 1
    closed = Conversation.get(idle["conversation_id"])
    assert closed.status == "closed" and closed.closed_by == "auto"
    assert Conversation.get(busy["conversation_id"]).status == "assigned"
    assert conversations.agent_loads(site.site_id) == {agent["agent_id"]: 1}
    events = [f for f in harness.mgmt.of_type(agent_conn, "conversation") if f["event"] == "closed"]
    assert [e["conversation"]["closed_by"] for e in events] == ["auto"]
    # the busy one's timer moved to N hours after its last message
    timeline(hours * 3600 - 1200)
    harness.reply(agent_conn, {"action": "ping"})
    assert sweep.sweep().autoclosed == 0
    timeline(1200)
    harness.reply(agent_conn, {"action": "ping"})
    assert sweep.sweep().autoclosed == 1
    assert conversations.agent_loads(site.site_id) == {}


def test_a_conversation_closed_by_an_agent_shows_who(harness):
    site, agent, agent_conn, visitor, visitor_conn = harness.chat(opened=True)
    closed = harness.reply(agent_conn, {"action": "close", "conversation_id": visitor["conversation_id"]})
    assert closed["conversation"]["closed_by"] == agent["agent_id"]
    told = harness.mgmt.of_type(visitor_conn, "conversation")[-1]
    assert told["event"] == "closed" and "closed_by" not in told["conversation"]


# ---- ratings -------------------------------------------------------------------------------

def test_a_visitor_rates_a_closed_conversation_once(harness):
    site, agent, agent_conn, visitor, visitor_conn = harness.chat(opened=True)
    cid = visitor["conversation_id"]
    early = harness.reply(visitor_conn, {"action": "rate", "conversation_id": cid, "rating": 5})
    assert early["code"] == "conversation_not_closed"
    harness.reply(agent_conn, {"action": "close", "conversation_id": cid})
    harness.mgmt.take(agent_conn)
    rated = harness.reply(visitor_conn, {"action": "rate", "conversation_id": cid, "rating": 4, "comment": " quick, thanks "})
    assert rated["event"] == "rated" and rated["conversation"]["rating"]["score"] == 4
    told = harness.mgmt.of_type(agent_conn, "conversation")
    assert told[-1]["event"] == "rated" and told[-1]["conversation"]["rating"]["comment"] == "quick, thanks"
    again = harness.reply(visitor_conn, {"action": "rate", "conversation_id": cid, "rating": 1})
    assert again["code"] == "already_rated"
    assert Conversation.get(cid).rating == 4


@pytest.mark.parametrize("fields,code", [
    ({"rating": 0}, "invalid_rating"), ({"rating": 6}, "invalid_rating"), ({"rating": "5"}, "invalid_rating"),
    ({"rating": True}, "invalid_rating"), ({"rating": 3, "comment": 7}, "invalid_comment"),
    ({"rating": 3, "comment": "x" * 201}, "comment_too_long"),
])
def test_bad_ratings_are_refused(harness, fields, code):
    site, agent, agent_conn, visitor, visitor_conn = harness.chat(opened=True)
    cid = visitor["conversation_id"]
    harness.reply(agent_conn, {"action": "close", "conversation_id": cid})
    assert harness.reply(visitor_conn, {"action": "rate", "conversation_id": cid, **fields})["code"] == code


def test_agents_cannot_rate(harness):
    site, agent, agent_conn, visitor, visitor_conn = harness.chat(opened=True)
    reply = harness.reply(agent_conn, {"action": "rate", "conversation_id": visitor["conversation_id"], "rating": 5})
    assert reply["code"] == "visitors_only"


# ---- canned responses ----------------------------------------------------------------------

def test_canned_responses_over_the_socket_and_rest(harness):
    site, agent, agent_conn, visitor, visitor_conn = harness.chat()
    colleague = harness.agent(site.site_id, "bo@shop.example")
    colleague_conn, _ = harness.connect(colleague["token"])
    saved = harness.reply(agent_conn, {"action": "canned_save", "shortcut": "Hello", "text": "Hi! How can I help?"})
    assert saved == {"type": "canned", "responses": [
        {"shortcut": "hello", "text": "Hi! How can I help?", "created_by": agent["agent_id"],
         "created_at": saved["responses"][0]["created_at"]}]}
    assert harness.mgmt.of_type(colleague_conn, "canned")[-1]["responses"] == saved["responses"]
    rest = harness.rest("POST", "/v1/canned", {"shortcut": "ship", "text": "We ship in 2 days."}, token=agent["token"])
    assert rest.status_code == 200 and [r["shortcut"] for r in rest.json_body["responses"]] == ["hello", "ship"]
    listed = harness.rest("GET", "/v1/canned", token=agent["token"]).json_body
    assert [r["text"] for r in listed["responses"]] == ["Hi! How can I help?", "We ship in 2 days."]
    deleted = harness.rest("DELETE", "/v1/canned/ship", token=agent["token"])
    assert deleted.status_code == 200 and [r["shortcut"] for r in deleted.json_body["responses"]] == ["hello"]
    missing = harness.rest("DELETE", "/v1/canned/ship", token=agent["token"])
    assert missing.status_code == 404 and missing.json_body["code"] == "canned_not_found"
    assert harness.reply(agent_conn, {"action": "canned_list"})["responses"] == deleted.json_body["responses"]
    assert harness.reply(visitor_conn, {"action": "canned_list"})["code"] == "agents_only"
    assert harness.rest("GET", "/v1/canned", token=visitor["token"]).status_code == 403


@pytest.mark.parametrize("frame,code", [
    ({"shortcut": "two words", "text": "x"}, "invalid_shortcut"),
    ({"shortcut": "a/b", "text": "x"}, "invalid_shortcut"),
    ({"shortcut": "x" * 33, "text": "x"}, "invalid_shortcut"),
    ({"shortcut": "ok", "text": "  "}, "invalid_text"),
    ({"shortcut": "ok", "text": "x" * 501}, "text_too_long"),
])
def test_bad_canned_responses_are_refused(harness, frame, code):
    site, agent, agent_conn, visitor, visitor_conn = harness.chat()
    assert harness.reply(agent_conn, {"action": "canned_save", **frame})["code"] == code


def test_a_site_has_at_most_fifty_canned_responses(harness):
    from chalicelib import canned

    site, agent, agent_conn, visitor, visitor_conn = harness.chat()
    for i in range(canned.MAX_CANNED):
        harness.reply(agent_conn, {"action": "canned_save", "shortcut": f"c{i}", "text": "t"})
    assert harness.reply(agent_conn, {"action": "canned_save", "shortcut": "more", "text": "t"})["code"] == "too_many_canned"
    assert harness.reply(agent_conn, {"action": "canned_save", "shortcut": "c1", "text": "new"})["type"] == "canned"


# ---- reports -------------------------------------------------------------------------------

def test_reports_count_at_events_per_site_and_agent(harness, timeline):
    site, agent, agent_conn, visitor, visitor_conn = harness.chat(opened=True)
    cid = visitor["conversation_id"]
    timeline(30)
    _send(harness, agent_conn, cid, "note", "checking", note=True)  # a note is no response
    timeline(30)
    _send(harness, agent_conn, cid, "a1", "Hello")
    _send(harness, agent_conn, cid, "a2", "Anything else?")
    timeline(60)
    harness.reply(agent_conn, {"action": "close", "conversation_id": cid})
    harness.reply(visitor_conn, {"action": "rate", "conversation_id": cid, "rating": 5})
    today = _today()
    got = harness.reply(agent_conn, {"action": "reports", "from": today, "to": today})
    assert got["type"] == "reports" and [d["day"] for d in got["days"]] == [today]
    totals = got["totals"]
    assert totals["conversations"] == 1 and totals["first_responses"] == 1 and totals["resolved"] == 1
    assert 59_000 <= totals["first_response_ms_avg"] <= 61_000  # the note at 30 s does not count
    assert 119_000 <= totals["resolution_ms_avg"] <= 122_000
    assert totals["ratings"] == 1 and totals["rating_avg"] == 5 and totals["ratings_by_score"]["5"] == 1
    mine = got["agents"][agent["agent_id"]]
    assert mine["first_responses"] == 1 and mine["resolved"] == 1 and mine["ratings"] == 1
    assert mine["conversations"] == 1  # handed to this agent when it opened
    rest = harness.rest("GET", f"/v1/reports?from={today}&to={today}", token=agent["token"])
    assert rest.status_code == 200 and rest.json_body["totals"] == totals
    # one agent's figures by day
    theirs = harness.reply(agent_conn, {"action": "reports", "from": today, "to": today, "agent_id": agent["agent_id"]})
    assert theirs["agent_id"] == agent["agent_id"] and theirs["days"][0]["resolved"] == 1
    assert theirs["totals"] == mine
    nobody = harness.reply(agent_conn, {"action": "reports", "from": today, "to": today, "agent_id": "agent_nobody"})
    assert nobody["totals"]["conversations"] == 0 and nobody["days"][0]["ratings"] == 0
    assert harness.reply(agent_conn, {"action": "reports", "from": today, "to": today, "agent_id": 7})["code"] == "invalid_agent_id"


@pytest.mark.parametrize("span,code", [
    (("2026-01-02", "2026-01-01"), "invalid_date_range"), (("2026-01-01", "2026-06-01"), "invalid_date_range"),
    (("yesterday", "2026-01-01"), "invalid_date"), (("2026-02-30", "2026-03-01"), "invalid_date"),
    ((None, "2026-01-01"), "invalid_date"),
])
def test_bad_report_ranges_are_refused(harness, span, code):
    site, agent, agent_conn, visitor, visitor_conn = harness.chat()
    assert harness.reply(agent_conn, {"action": "reports", "from": span[0], "to": span[1]})["code"] == code
    assert harness.reply(visitor_conn, {"action": "reports", "from": "2026-01-01", "to": "2026-01-01"})["code"] == "agents_only"
