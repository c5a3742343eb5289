"""Limits that hold across sockets, REST and function instances (issue 12). Measured before:
10 sockets of one visitor got 184 acks; REST sends had no limit; 150 sessions in 9 s from one
address; typing and page_view unlimited; 200 wrong agent passwords in 25 s, then the right one
accepted; site ids enumerable by 404 against 401. Windows are fixed, so every test holds the
clock still (``timeline``) where a window boundary would otherwise reset a count mid-test."""
from __future__ import annotations

import pytest

from bench.metering import counting
from chalicelib import clock, send_limit, sessions
from chalicelib.config import settings
from chalicelib.errors import KefuError
from chalicelib.models import Conversation, Message


def test_a_visitors_sends_are_limited_across_sockets_rest_and_functions(harness, timeline):
    site = harness.site()
    visitor = harness.visitor(site.site_id)
    cid = visitor["conversation_id"]
    sockets = [harness.connect(visitor["token"])[0] for _ in range(10)]
    acked, limited = 0, 0
    for i in range(40):
        send_limit._last_window.clear()  # every send on a fresh function instance
        if i % 4 == 3:
            response = harness.rest("POST", f"/v1/conversations/{cid}/messages",
                                    {"client_msg_id": f"m{i}", "text": "spam"}, token=visitor["token"])
            reply = response.json_body if response.status_code == 200 else {"code": response.json_body["code"]}
        else:
            reply = harness.reply(sockets[i % len(sockets)], {"action": "send", "conversation_id": cid,
                                                             "client_msg_id": f"m{i}", "text": "spam"})
        if reply.get("type") == "ack":
            acked += 1
        else:
            assert reply["code"] == "rate_limited"
            limited += 1
    assert acked == settings().rate_limit and limited == 40 - acked
    assert Message.count(cid) == acked  # a refused send stores nothing


def test_the_send_limit_opens_again_in_the_next_window(harness, timeline):
    site = harness.site()
    visitor = harness.visitor(site.site_id)
    conn, _ = harness.connect(visitor["token"])
    send = lambda i: harness.reply(conn, {"action": "send", "conversation_id": visitor["conversation_id"],  # noqa: E731
                                          "client_msg_id": f"m{i}", "text": "hi"})
    results = [send(i).get("code", "ack") for i in range(settings().rate_limit + 1)]
    assert results[-1] == "rate_limited" and results.count("ack") == settings().rate_limit
    timeline(settings().rate_window)
    assert send(999)["type"] == "ack"




def _visitor_sends(harness):
    site = harness.site()
    visitor = harness.visitor(site.site_id)
    conn, _ = harness.connect(visitor["token"])
    count = iter(range(10_000))

    def send():
        return harness.reply(conn, {"action": "send", "conversation_id": visitor["conversation_id"],
                                    "client_msg_id": f"m{next(count)}", "text": "hi"}).get("code", "ack")
    return visitor["conversation_id"], send


def test_counting_a_visitors_sends_costs_no_refused_write_on_any_function_instance(harness, timeline):
    """The count rides on the seq update: one write whether the window is new or not, also on an
    instance that never saw the conversation (each send below), where a guess between two writes
    was wrong 0.44 times per message under load."""
    cid, send = _visitor_sends(harness)
    assert send() == "ack"  # the first one creates the conversation item: refusals expected there
    with counting() as calls:
        for window in range(8):
            for _ in range(3):
                send_limit._last_window.clear()
                assert send() == "ack"
            timeline(settings().rate_window)
    assert calls.writes == 8 * 3 * 2, calls.by_operation()  # the seq update, the message: nothing refused
    stored = Conversation.get(cid)
    assert [getattr(stored, f"send_count_{i}") for i in range(send_limit.RATE_SLOTS)].count(None) == send_limit.RATE_SLOTS - 1


@pytest.mark.parametrize("instance", ["fresh", "warm"])
def test_a_count_left_from_a_whole_number_of_slot_cycles_ago_starts_again(harness, timeline, instance):
    """The slot of window W is also the slot of W + RATE_SLOTS: a visitor silent in between finds
    their old count there, and it must not count against them."""
    cid, send = _visitor_sends(harness)
    limit = settings().rate_limit
    assert [send() for _ in range(limit + 1)][-2:] == ["ack", "rate_limited"]
    timeline(settings().rate_window * send_limit.RATE_SLOTS)
    if instance == "fresh":
        send_limit._last_window.clear()
    with counting() as calls:
        assert send() == "ack"
    # a fresh instance tries the count first (one refused write); a warm one knows the window it saw
    assert calls.writes == (3 if instance == "fresh" else 2), calls.by_operation()
    assert [send() for _ in range(limit)][-2:] == ["ack", "rate_limited"]


def test_a_count_kept_by_the_former_single_counter_is_replaced(harness, timeline):
    cid, send = _visitor_sends(harness)
    assert send() == "ack"
    window = int(clock.now() // settings().rate_window)
    slot = getattr(Conversation, f"send_count_{window % send_limit.RATE_SLOTS}")
    Conversation(cid).update(actions=[Conversation.send_window.set(window), slot.remove(),
                                      Conversation.send_count.set(settings().rate_limit)])  # as it stood before
    assert send() == "ack"
    stored = Conversation.get(cid)
    assert stored.send_count is None and getattr(stored, f"send_count_{window % send_limit.RATE_SLOTS}") == 1


@pytest.fixture
def site_id(harness):
    return harness.site().site_id


def test_sessions_from_one_address_are_limited_and_others_are_not(harness, timeline, site_id):
    limit = settings().session_limit
    for _ in range(limit):
        sessions.visitor_session({"site_id": site_id}, None, "203.0.113.9")
    with pytest.raises(KefuError) as refused:
        sessions.visitor_session({"site_id": site_id}, None, "203.0.113.9")
    assert (refused.value.status, refused.value.code) == (429, "rate_limited")
    assert sessions.visitor_session({"site_id": site_id}, None, "198.51.100.7")["token"]
    response = harness.rest("POST", "/v1/visitor/session", {"site_id": site_id})  # REST reads the address
    assert response.status_code == 200


@pytest.mark.parametrize("action,limit_name", [("typing", "typing_limit"), ("page_view", "page_view_limit")])
def test_typing_and_page_views_are_limited(harness, timeline, action, limit_name):
    site, agent, agent_conn, visitor, visitor_conn = harness.chat()
    frame = {"action": action, "conversation_id": visitor["conversation_id"], "url": "https://shop.example/",
             "req": 1}
    codes = []
    for _ in range(getattr(settings(), limit_name) + 1):
        replies = harness.frame(visitor_conn, frame)
        codes.append(replies[0].get("code") if replies else None)
    assert codes[-1] == "rate_limited" and "rate_limited" not in codes[:-1]


def _login(harness, site_id, email, password):
    return harness.rest("POST", "/v1/agent/session", {"site_id": site_id, "email": email, "password": password})


def test_unknown_site_unknown_email_and_wrong_password_look_the_same(harness):
    site = harness.site()
    harness.agent(site.site_id)
    answers = [_login(harness, s, e, "wrong password") for s, e in
               ((site.site_id, "ann@shop.example"), (site.site_id, "nobody@shop.example"),
                ("site_doesnotexist", "ann@shop.example"))]
    assert {(a.status_code, a.json_body["code"], a.json_body["message"]) for a in answers} == {
        (401, "invalid_credentials", "wrong site, email or password")}


def test_guessing_passwords_backs_off_even_for_the_right_one(harness, timeline):
    site = harness.site()
    harness.agent(site.site_id)
    statuses = [_login(harness, site.site_id, "ann@shop.example", f"guess {i}").status_code for i in range(8)]
    assert statuses[:5] == [401] * 5 and statuses[5:] == [429] * 3
    refused = _login(harness, site.site_id, "ann@shop.example", "correct horse")
    assert refused.status_code == 429 and refused.json_body["code"] == "too_many_attempts"
    assert int(refused.headers["Retry-After"]) > 0
    timeline(int(refused.headers["Retry-After"]) + 1)
    assert _login(harness, site.site_id, "ann@shop.example", "correct horse").status_code == 200
    # a success forgets the failures
    assert _login(harness, site.site_id, "ann@shop.example", "one typo").status_code == 401


def test_logins_from_one_address_are_limited_across_accounts(harness, timeline):
    site = harness.site()
    codes = [_login(harness, site.site_id, f"user{i}@shop.example", "wrong password").json_body["code"]
             for i in range(settings().login_ip_limit + 1)]
    assert codes[-1] == "too_many_attempts" and codes.count("invalid_credentials") == settings().login_ip_limit


def test_page_loads_alone_never_reach_agents(harness, no_rate_limits):
    site = harness.site()
    agent = harness.agent(site.site_id)
    agent_conn, _ = harness.connect(agent["token"])
    for _ in range(30):  # page loads: a session and a socket each, nobody writes
        visitor = harness.visitor(site.site_id)
        harness.connect(visitor["token"])
    # No conversation and no presence pushed: only the live visitors view (issue 16) hears of them.
    assert {frame["type"] for frame in harness.mgmt.frames.get(agent_conn, [])} <= {"visitor"}
    assert harness.reply(agent_conn, {"action": "state"})["conversations"] == []
    harness.say(visitor, "hello?")  # the one who writes is the one agents see
    assert [c["conversation_id"] for c in harness.reply(agent_conn, {"action": "state"})["conversations"]] == [
        visitor["conversation_id"]]
