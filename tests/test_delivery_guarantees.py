"""Ordering, idempotency, catch-up and 410 handling: the promises the product is sold on."""
from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import boto3
from botocore.stub import Stubber

from chalicelib import connections, delivery
from chalicelib.models import Connection, Message


def _send(harness, conn, cid, cmid, text="x"):
    reply = harness.reply(conn, {"action": "send", "conversation_id": cid, "client_msg_id": cmid, "text": text})
    assert reply["type"] == "ack", reply
    return reply


def test_concurrent_senders_get_gap_free_ordered_seqs(harness, no_rate_limits):
    # opened: the visitor wrote first (seq 1), so the conversation has its item and agents may write in
    # it (a reserved one has none until then); 21 visitor messages in a moment: the send limit is lifted
    site, agent, agent_conn, visitor, visitor_conn = harness.chat(opened=True)
    cid = visitor["conversation_id"]
    from tests.support import message_event

    def fire(i):
        conn = agent_conn if i % 2 else visitor_conn
        harness.client.lambda_.invoke("ws_message", message_event(
            conn, {"action": "send", "conversation_id": cid, "client_msg_id": f"m{i}", "text": str(i)}))

    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(fire, range(40)))
    acks = harness.mgmt.of_type(agent_conn, "ack") + harness.mgmt.of_type(visitor_conn, "ack")
    assert sorted(a["seq"] for a in acks) == list(range(2, 42))
    page = harness.reply(visitor_conn, {"action": "sync", "conversation_id": cid, "after_seq": 1, "limit": 50})
    assert [m["seq"] for m in page["messages"]] == list(range(2, 42))
    assert sorted(m["client_msg_id"] for m in page["messages"]) == sorted(f"m{i}" for i in range(40))


def test_retried_client_msg_id_is_stored_once_and_gets_the_original_ack(harness):
    site, agent, agent_conn, visitor, conn = harness.chat()
    cid = visitor["conversation_id"]
    first = _send(harness, conn, cid, "same", "hello")
    harness.mgmt.take(agent_conn)
    again = _send(harness, conn, cid, "same", "hello")
    assert again["duplicate"] is True
    assert (again["seq"], again["id"], again["created_at"]) == (first["seq"], first["id"], first["created_at"])
    assert harness.mgmt.of_type(agent_conn, "message") == []  # not delivered twice
    assert Message.count(cid) == 1
    assert _send(harness, conn, cid, "next")["seq"] == 2  # the seq the retry took was given back


def test_a_late_retry_leaves_the_conversation_preview_on_the_newest_message(harness):
    """The retry's seq update writes its own text as the preview, as any send does; given back
    with its seq, the preview is the newest message's again (the agents' list shows it)."""
    from chalicelib.models import Conversation

    site, agent, agent_conn, visitor, conn = harness.chat()
    cid = visitor["conversation_id"]
    _send(harness, conn, cid, "same", "我想问一下发货时间")
    _send(harness, agent_conn, cid, "reply", "明天发货")
    note = harness.reply(agent_conn, {"action": "send", "conversation_id": cid, "client_msg_id": "note",
                                      "text": "VIP customer", "note": True})  # never a preview: shown to agents only
    assert note["type"] == "ack"
    harness.mgmt.take(conn)
    assert harness.reply(conn, {"action": "send", "conversation_id": cid, "client_msg_id": "same",
                                "text": "我想问一下发货时间"})["duplicate"] is True
    stored = Conversation.get(cid)
    assert (stored.last_seq, stored.last_text) == (3, "明天发货")


def test_a_retry_racing_another_message_leaves_an_explicit_gap(harness, monkeypatch):
    """The retry's seq cannot go back once another message took the next one: it becomes a gap."""
    from chalicelib import messages

    site, agent, agent_conn, visitor, conn = harness.chat()
    cid = visitor["conversation_id"]
    _send(harness, conn, cid, "same", "hello")
    original = messages._give_back

    def another_message_first(retry):
        monkeypatch.setattr(messages, "_give_back", original)
        assert _send(harness, agent_conn, cid, "agent1", "hi")["seq"] == retry.seq + 1
        original(retry)

    monkeypatch.setattr(messages, "_give_back", another_message_first)
    replies = harness.frame(conn, {"action": "send", "conversation_id": cid, "client_msg_id": "same", "text": "hello"})
    assert [(r["type"], r["seq"], r.get("duplicate")) for r in replies] == [("message", 3, None), ("ack", 1, True)]
    page = harness.reply(conn, {"action": "sync", "conversation_id": cid, "after_seq": 0})
    assert [m["seq"] for m in page["messages"]] == [1, 3] and page["gaps"] == [2] and page["next_after_seq"] == 3


def test_concurrent_retries_of_one_message_store_it_once(harness):
    site = harness.site()
    visitor = harness.visitor(site.site_id)
    conn, _ = harness.connect(visitor["token"])
    cid = visitor["conversation_id"]
    from tests.support import message_event

    frame = {"action": "send", "conversation_id": cid, "client_msg_id": "dup", "text": "once"}
    with ThreadPoolExecutor(max_workers=6) as pool:
        list(pool.map(lambda _: harness.client.lambda_.invoke("ws_message", message_event(conn, frame)), range(6)))
    replies = harness.mgmt.take(conn)
    assert [r["type"] for r in replies] == ["ack"] * 6
    assert len({r["seq"] for r in replies}) == 1 and sum(not r.get("duplicate") for r in replies) == 1
    assert [m.client_msg_id for m in Message.query(cid) if not m.gap] == ["dup"]
    # every seq the retries took was given back or is an explicit gap: nobody waits for one
    page = harness.reply(conn, {"action": "sync", "conversation_id": cid, "after_seq": 0})
    assert [m["client_msg_id"] for m in page["messages"]] == ["dup"]
    assert sorted(page["gaps"] + [replies[0]["seq"]]) == list(range(1, page["last_seq"] + 1))
    assert _send(harness, conn, cid, "after")["seq"] == page["last_seq"] + 1


def test_sync_after_outage_returns_exactly_the_missed_messages(harness):
    site, agent, agent_conn, visitor, conn = harness.chat()
    cid = visitor["conversation_id"]
    for i in range(3):
        _send(harness, conn, cid, f"before{i}")
    seen = 3
    harness.disconnect(conn)  # the visitor's network drops
    for i in range(120):  # more than two sync pages, sent through REST (no per-socket rate limit)
        response = harness.rest("POST", f"/v1/conversations/{cid}/messages",
                                {"client_msg_id": f"a{i}", "text": f"missed {i}"}, token=agent["token"])
        assert response.status_code == 200
    conn, _ = harness.connect(visitor["token"])
    got, after = [], seen
    while True:
        page = harness.reply(conn, {"action": "sync", "conversation_id": cid, "after_seq": after})
        got += page["messages"]
        if not page["has_more"]:
            break
        after = page["messages"][-1]["seq"]
    assert [m["text"] for m in got] == [f"missed {i}" for i in range(120)]
    assert [m["seq"] for m in got] == list(range(4, 124))


def test_gone_connection_is_removed_and_message_still_stored(harness, timeline):
    site = harness.site()
    agent = harness.agent(site.site_id)
    dead_agent_conn, _ = harness.connect(agent["token"])
    live_agent_conn, _ = harness.connect(agent["token"])
    visitor = harness.visitor(site.site_id)
    conn, _ = harness.connect(visitor["token"])
    timeline(connections.CONNECT_WINDOW_SECONDS + 1)  # past $connect: a 410 now means gone
    harness.mgmt.gone.add(dead_agent_conn)
    ack = _send(harness, conn, visitor["conversation_id"], "c1", "anyone?")
    assert ack["seq"] == 1
    assert harness.mgmt.of_type(live_agent_conn, "message")[-1]["text"] == "anyone?"
    assert Connection.count(dead_agent_conn) == 0  # the stale one, not the sender
    assert Connection.count(conn) == 1
    from chalicelib.models import Site, as_dict

    roster = as_dict(Site.get(site.site_id).agent_conns)
    assert dead_agent_conn not in roster and live_agent_conn in roster
    assert Message.count(visitor["conversation_id"]) == 1


def test_real_boto3_client_410_is_reported_as_gone(monkeypatch):
    """The real Management API client, its 410 stubbed with botocore's Stubber."""
    client = boto3.client("apigatewaymanagementapi", endpoint_url="https://x.execute-api.us-east-1.amazonaws.com/dev",
                          region_name="us-east-1")
    stubber = Stubber(client)
    stubber.add_client_error("post_to_connection", service_error_code="GoneException", http_status_code=410)
    stubber.add_response("post_to_connection", {})
    monkeypatch.setattr(delivery, "_client", lambda endpoint: client)
    with stubber:
        assert delivery.post("gone=", {"type": "pong"}) == delivery.GONE
        assert delivery.post("alive=", {"type": "pong"}) == delivery.DELIVERED
    stubber.assert_no_pending_responses()


def test_recipients_are_posted_concurrently(harness, monkeypatch):
    site = harness.site()
    agent = harness.agent(site.site_id)
    agent_conns = [harness.connect(agent["token"])[0] for _ in range(4)]
    visitor = harness.visitor(site.site_id)
    conn, _ = harness.connect(visitor["token"])
    barrier = threading.Barrier(4, timeout=5)
    original = harness.mgmt.post_to_connection

    def post(ConnectionId, Data):
        if ConnectionId in agent_conns:
            barrier.wait()  # only passes if all four posts are in flight at once
        original(ConnectionId, Data)

    monkeypatch.setattr(harness.mgmt, "post_to_connection", post)
    _send(harness, conn, visitor["conversation_id"], "c1", "to all")
    assert all(harness.mgmt.of_type(c, "message") for c in agent_conns)
