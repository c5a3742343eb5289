"""Exactly once in real-life sequences (issue 10): every defect measured there, as a regression test.

Each test drives the Lambda entry points as API Gateway would (tests/support.py), with the
Management API fake answering 410 during $connect and 413 above 128 KB, as the real one does.
"""
from __future__ import annotations

import json
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from chalicelib import conversations, delivery, protocol, requeue, sweep
from chalicelib.config import settings
from chalicelib.models import Conversation, Message, Site, Visitor
from tests.support import new_connection_id

# 3,875 characters
LONG_CHINESE = "这个紫砂茶壶有货吗？我想买两个送给朋友，请问可以包装成礼盒吗？" * 125


def _send(harness, conn, cid, client_msg_id, text="hi"):
    protocol._recent_sends.clear()  # these tests send faster than a person: not the rate limit's concern
    return harness.reply(conn, {"action": "send", "conversation_id": cid, "client_msg_id": client_msg_id,
                                "text": text})


def _catch_up(harness, conn, cid, synced_seq=0):
    """The documented catch-up rule; returns (messages, gaps, replies) seen."""
    seen, gaps, replies, after = [], set(), [], synced_seq
    while True:
        page = harness.reply(conn, {"action": "sync", "conversation_id": cid, "after_seq": after})
        assert page["type"] == "messages", page
        replies.append(page)
        seen += page["messages"]
        gaps |= set(page["gaps"])
        if not page["has_more"]:
            return seen, gaps, replies
        assert page["next_after_seq"] > after  # always progresses
        after = page["next_after_seq"]


# --- 1. every reply and push fits API Gateway's limits ----------------------------------------

def test_a_sync_of_long_chinese_messages_comes_in_pages_that_fit(harness, no_rate_limits):
    site, agent, agent_conn, visitor, visitor_conn = harness.chat()
    cid = visitor["conversation_id"]
    for i in range(50):
        assert _send(harness, visitor_conn, cid, f"long{i}", f"{i}:{LONG_CHINESE}")["seq"] == i + 1
    messages, gaps, replies = _catch_up(harness, agent_conn, cid)
    assert [m["seq"] for m in messages] == list(range(1, 51)) and not gaps
    assert len(replies) > 1
    assert all(len(delivery.encode(r)) <= 128 * 1024 for r in replies)


def test_an_agents_state_and_list_are_paged_to_fit(harness):
    site = harness.site()
    agent = harness.agent(site.site_id)
    created = []
    for i in range(40):  # ~4 KB of visitor per conversation: 160 KB at once
        visitor = harness.visitor(site.site_id, name=f"访客{i}", attributes={"note": "备注" * 600})
        harness.say(visitor)
        created.append(visitor["conversation_id"])
    conn, _ = harness.connect(agent["token"])
    state = harness.reply(conn, {"action": "state"})
    assert len(delivery.encode(state)) <= 128 * 1024 and state["next_cursor"]
    listed = [c["conversation_id"] for c in state["conversations"]]
    cursor = state["next_cursor"]
    while cursor:
        page = harness.reply(conn, {"action": "list", "cursor": cursor})
        assert page["type"] == "conversations" and len(delivery.encode(page)) <= 128 * 1024
        listed += [c["conversation_id"] for c in page["conversations"]]
        cursor = page["next_cursor"]
    assert listed == created  # every open conversation once, oldest first (the queue's order)


def test_a_bad_cursor_is_a_typed_error(harness):
    site, agent, agent_conn, visitor, visitor_conn = harness.chat()
    for cursor in ("garbage", 17, "W10", "WyJ4IiwxXQ"):
        assert harness.reply(agent_conn, {"action": "list", "cursor": cursor})["code"] == "invalid_cursor"


def test_a_push_too_large_is_counted_as_an_error_not_a_delivery(harness):
    before = delivery.stats[delivery.TOO_LARGE]
    outcome = delivery.post("c0nnection1d00=", {"type": "message", "text": "x" * (129 * 1024)})
    assert outcome == delivery.TOO_LARGE and delivery.stats[delivery.TOO_LARGE] == before + 1


# --- 2. a connection is never lost to its own $connect window ----------------------------------

def test_a_push_during_connect_neither_drops_the_connection_nor_loses_the_message(harness):
    site, agent, agent_conn, visitor, visitor_conn = harness.chat()
    cid = visitor["conversation_id"]
    harness.disconnect(agent_conn)
    # the agent reconnects; a visitor's message arrives while its $connect is still running
    from tests.support import connect_event
    reconnecting = new_connection_id()
    harness.mgmt.gone.add(reconnecting)
    original = conversations.assign_queued

    def message_arrives_meanwhile(site, connecting=None):
        assert _send(harness, visitor_conn, cid, "during", "are you there?")["seq"] == 1
        return original(site, connecting)

    conversations.assign_queued = message_arrives_meanwhile
    try:
        response = harness.client.lambda_.invoke("ws_connect", connect_event(reconnecting, agent["token"]))
    finally:
        conversations.assign_queued = original
        harness.mgmt.gone.discard(reconnecting)
    assert response.payload["statusCode"] == 200
    assert harness.reply(reconnecting, {"action": "state"})["type"] == "state"  # not connection_unknown
    messages, _, _ = _catch_up(harness, reconnecting, cid)
    assert [m["text"] for m in messages] == ["are you there?"]


def test_connection_unknown_closes_the_socket_so_the_client_reconnects(harness):
    stranger = new_connection_id()
    reply = harness.reply(stranger, {"action": "ping"})
    assert reply["code"] == "connection_unknown"
    assert stranger in harness.mgmt.deleted


# --- 3. closed is not a dead end -------------------------------------------------------------

def test_closing_tells_the_visitor(harness):
    site, agent, agent_conn, visitor, visitor_conn = harness.chat(opened=True)
    harness.reply(agent_conn, {"action": "close", "conversation_id": visitor["conversation_id"]})
    events = harness.mgmt.of_type(visitor_conn, "conversation")
    assert events[-1]["event"] == "closed" and events[-1]["conversation"]["status"] == "closed"


@pytest.mark.parametrize("transport", ["websocket", "rest"])
def test_a_visitor_writing_after_close_reopens_the_conversation(harness, transport):
    site, agent, agent_conn, visitor, visitor_conn = harness.chat()
    cid = visitor["conversation_id"]
    _send(harness, visitor_conn, cid, "before", "first question")
    harness.reply(agent_conn, {"action": "close", "conversation_id": cid})
    harness.mgmt.take(agent_conn)
    if transport == "rest":
        response = harness.rest("POST", f"/v1/conversations/{cid}/messages",
                                {"client_msg_id": "after", "text": "one more thing"}, token=visitor["token"])
        assert response.status_code == 200
        ack = response.json_body
    else:
        ack = [f for f in harness.frame(visitor_conn, {"action": "send", "conversation_id": cid,
                                                       "client_msg_id": "after", "text": "one more thing"})
               if f["type"] == "ack"][0]
    assert ack["conversation_id"] == cid and ack["seq"] == 2
    to_agent = harness.mgmt.frames[agent_conn]
    assert [f["text"] for f in to_agent if f["type"] == "message"] == ["one more thing"]
    reopened = [f for f in to_agent if f["type"] == "conversation" and f["event"] == "reopened"][-1]
    assert reopened["conversation"]["status"] == "assigned"
    assert reopened["conversation"]["agent_id"] == agent["agent_id"]  # back to the agent who had it
    conversation = Conversation.get(cid)
    assert conversation.status == "assigned" and conversation.open_site_id == site.site_id


def test_a_visitor_writing_to_an_old_closed_conversation_lands_in_the_current_one(harness):
    site, agent, agent_conn, visitor, old_tab = harness.chat(opened=True)
    old = visitor["conversation_id"]
    harness.reply(agent_conn, {"action": "close", "conversation_id": old})
    fresh = harness.visitor(site.site_id, visitor_id=visitor["visitor_id"])  # another tab reloads
    assert fresh["conversation_id"] != old
    assert Conversation.count(fresh["conversation_id"]) == 0  # reserved: no item until someone writes
    ack = _send(harness, old_tab, old, "from-old-tab", "still here")
    assert ack["type"] == "ack" and ack["conversation_id"] == fresh["conversation_id"] and ack["seq"] == 1
    assert Conversation.get(old).status == "closed"
    assert Conversation.get(fresh["conversation_id"]).status in ("queued", "assigned")
    assert Message.count(old) == 1 and Message.count(fresh["conversation_id"]) == 1
    assert _send(harness, old_tab, old, "from-old-tab", "still here")["duplicate"] is True  # a retry


def test_an_agent_sending_to_a_closed_conversation_is_refused_and_nothing_is_stored(harness):
    site, agent, agent_conn, visitor, visitor_conn = harness.chat(opened=True)
    cid = visitor["conversation_id"]
    harness.reply(agent_conn, {"action": "close", "conversation_id": cid})
    assert _send(harness, agent_conn, cid, "late")["code"] == "conversation_closed"
    assert Message.count(cid) == 1  # the visitor's first message only


# --- 4. races --------------------------------------------------------------------------------

def _truth(site_id):
    """Agents' loads from the conversations themselves."""
    loads = {}
    for conversation in Conversation.site_created_index.query(site_id):
        full = Conversation.get(conversation.conversation_id, consistent_read=True)
        if full.status == "assigned":
            loads[full.agent_id] = loads.get(full.agent_id, 0) + 1
    return loads


def test_close_racing_claim_and_transfer_never_skews_loads(harness):
    site = harness.site()
    ann = harness.agent(site.site_id, email="ann@shop.example")
    bob = harness.agent(site.site_id, email="bob@shop.example")
    ann_conn, _ = harness.connect(ann["token"])
    bob_conn, _ = harness.connect(bob["token"])
    cids = []
    for _ in range(6):
        visitor = harness.visitor(site.site_id)
        harness.say(visitor)
        cids.append(visitor["conversation_id"])
    with ThreadPoolExecutor(max_workers=6) as pool:
        for cid in cids:
            pool.submit(harness.frame, ann_conn, {"action": "close", "conversation_id": cid})
            pool.submit(harness.frame, bob_conn, {"action": "claim", "conversation_id": cid})
            pool.submit(harness.frame, ann_conn, {"action": "transfer", "conversation_id": cid,
                                                  "agent_id": bob["agent_id"]})
    truth = _truth(site.site_id)
    derived = conversations.agent_loads(site.site_id)
    assert {a: n for a, n in derived.items() if n} == truth
    assert all(Conversation.get(c).status == "closed" for c in cids)  # every close won in the end


def test_transfer_to_the_agent_who_has_it_is_a_no_op(harness):
    site, agent, agent_conn, visitor, visitor_conn = harness.chat(opened=True)
    cid = visitor["conversation_id"]
    reply = harness.reply(agent_conn, {"action": "transfer", "conversation_id": cid, "agent_id": agent["agent_id"]})
    assert reply["type"] == "conversation" and reply["conversation"]["agent_id"] == agent["agent_id"]
    assert conversations.agent_loads(site.site_id)[agent["agent_id"]] == 1


def test_simultaneous_sessions_of_one_visitor_share_one_conversation(harness):
    site = harness.site()
    first = harness.visitor(site.site_id)
    harness.connect(harness.agent(site.site_id)["token"])
    harness.say(first)  # the item exists once they write
    Conversation(first["conversation_id"]).update(actions=[Conversation.status.set("closed"),
                                                           Conversation.open_site_id.remove()])
    barrier = threading.Barrier(6)

    def session(_):
        barrier.wait()
        return harness.visitor(site.site_id, visitor_id=first["visitor_id"])["conversation_id"]

    with ThreadPoolExecutor(max_workers=6) as pool:
        got = set(pool.map(session, range(6)))
    assert len(got) == 1
    assert Visitor.get(site.site_id, first["visitor_id"]).conversation_id in got
    from chalicelib.models import Conversation as C
    theirs = [c.conversation_id for c in C.site_created_index.query(site.site_id)
              if C.get(c.conversation_id).visitor_id == first["visitor_id"]]
    # the closed first one only: the new one is reserved (no item until someone writes), and no
    # session that lost the race left an orphan
    assert theirs == [first["conversation_id"]] and C.count() == 1


def test_a_sweep_that_fails_after_dropping_a_dead_agent_still_requeues(harness, timeline, monkeypatch):
    site, agent, agent_conn, visitor, visitor_conn = harness.chat(opened=True)
    timeline(settings().heartbeat_timeout + 5)
    harness.reply(visitor_conn, {"action": "ping"})
    original = requeue.run
    failing = {"left": 1}

    def crash_once(timer):
        if failing["left"]:
            failing["left"] -= 1
            raise RuntimeError("the function died here")
        return original(timer)

    monkeypatch.setattr(requeue, "run", crash_once)
    first = sweep.sweep()
    assert first.dropped_ids == [agent_conn] and not first.complete
    assert Conversation.get(visitor["conversation_id"]).status == "assigned"  # stuck with a dead agent...
    timeline(1)
    second = sweep.sweep()
    assert second.requeued == 1  # ...until the next run finds the timer
    assert Conversation.get(visitor["conversation_id"]).status == "queued"


def test_a_clean_agent_disconnect_requeues_after_the_grace_period(harness, timeline):
    site, agent, agent_conn, visitor, visitor_conn = harness.chat(opened=True)
    cid = visitor["conversation_id"]
    harness.disconnect(agent_conn)  # lid closed cleanly, or logged out
    sweep.sweep()
    assert Conversation.get(cid).status == "assigned"  # not at once: a reload must not reshuffle
    timeline(settings().agent_requeue_grace + 1)
    harness.reply(visitor_conn, {"action": "ping"})
    assert sweep.sweep().requeued == 1
    assert Conversation.get(cid).status == "queued"


def test_a_reload_within_the_grace_period_keeps_the_agents_chats(harness, timeline):
    site, agent, agent_conn, visitor, visitor_conn = harness.chat(opened=True)
    colleague = harness.agent(site.site_id, email="cy@shop.example")
    harness.connect(colleague["token"])
    harness.disconnect(agent_conn)
    timeline(5)
    harness.connect(agent["token"])  # the page reloaded
    timeline(settings().agent_requeue_grace + 1)
    harness.reply(visitor_conn, {"action": "ping"})
    report = sweep.sweep()
    assert report.requeued == 0 and Conversation.get(visitor["conversation_id"]).agent_id == agent["agent_id"]


# --- 5. open conversations by an index of open conversations ---------------------------------------

def test_every_open_conversation_of_a_dead_agent_is_requeued_past_two_hundred(harness, timeline):
    site = harness.site()
    agent = harness.agent(site.site_id)
    conn, _ = harness.connect(agent["token"])
    now = 1_700_000_000_000
    for i in range(230):  # written directly: 230 sessions through the API would take minutes
        Conversation(f"conv_bulk{i:04d}", site_id=site.site_id, visitor_id=f"v_bulk{i:04d}", status="assigned",
                     agent_id=agent["agent_id"], open_site_id=site.site_id, opened_at=now + i,
                     created_at=now + i, updated_at=now + i).save()
    timeline(settings().heartbeat_timeout + 5)
    report = sweep.sweep()
    assert report.dropped_ids == [conn] and report.requeued == 230
    assert all(c.status == "queued" for c in conversations.open_entries(site.site_id))


def test_the_queue_is_served_oldest_first(harness):
    site = harness.site()
    cids = []
    for _ in range(3):
        visitor = harness.visitor(site.site_id)
        harness.say(visitor)
        cids.append(visitor["conversation_id"])
    agent = harness.agent(site.site_id)
    conn, _ = harness.connect(agent["token"])
    assert [c["conversation_id"] for c in harness.reply(conn, {"action": "state"})["conversations"]] == cids


# --- 6. one catch-up rule that cannot skip; gaps are explicit -----------------------------------

def test_a_writer_dying_between_its_writes_leaves_an_explicit_gap_and_loses_nothing(harness, timeline, monkeypatch):
    site, agent, agent_conn, visitor, visitor_conn = harness.chat()
    cid = visitor["conversation_id"]
    assert _send(harness, visitor_conn, cid, "m1", "one")["seq"] == 1
    original = Message.save
    crash = {"left": 1}

    def dies_before_storing(self, condition=None, **kwargs):
        if crash["left"] and self.client_msg_id == "m2":
            crash["left"] -= 1
            raise SystemError("the function died between taking the seq and storing the message")
        return original(self, condition=condition, **kwargs)

    monkeypatch.setattr(Message, "save", dies_before_storing)
    assert _send(harness, visitor_conn, cid, "m2", "two")["code"] == "internal_error"  # seq 2 taken, unused
    assert _send(harness, visitor_conn, cid, "m3", "three")["seq"] == 3

    # a client following the rule never waits for 2: it shows 1 and 3 and is caught up
    messages, gaps, _ = _catch_up(harness, agent_conn, cid)
    assert [m["seq"] for m in messages] == [1, 3] and gaps == set()

    assert _send(harness, visitor_conn, cid, "m2", "two")["seq"] == 4  # the re-send stores it, under a new seq
    assert _send(harness, visitor_conn, cid, "m2", "two")["duplicate"] is True  # and only once
    timeline(settings().seq_gap_seconds + 1)  # the dead writer's number is declared a gap for good
    messages, gaps, _ = _catch_up(harness, agent_conn, cid, synced_seq=1)
    assert [m["text"] for m in messages] == ["three", "two"] and gaps == {2}
    again, gaps_again, _ = _catch_up(harness, agent_conn, cid, synced_seq=1)
    assert gaps_again == {2} and len(again) == 2  # the tombstone stands; nothing else changed
    assert Message.count(cid) == 4  # three messages and one tombstone


def test_a_message_left_without_a_seq_by_the_former_write_order_is_stored_by_its_retry(harness):
    """Before seqs were taken first, a send stored its message, then took a seq, then set it: a
    writer that died in between left the message without a seq (outside the seq index). Its retry
    gives it the seq it takes, and delivers it, once."""
    site, agent, agent_conn, visitor, visitor_conn = harness.chat()
    cid = visitor["conversation_id"]
    assert _send(harness, visitor_conn, cid, "m1", "one")["seq"] == 1
    first = Message.get(cid, "m1")
    Message(cid, "m2", message_id="msg_legacy", sender_role="visitor", sender_id=first.sender_id, text="two",
            created_at=first.created_at).save()
    harness.mgmt.take(agent_conn)
    ack = _send(harness, visitor_conn, cid, "m2", "two")
    assert ack["type"] == "ack" and ack["seq"] == 2 and ack["id"] == "msg_legacy" and "duplicate" not in ack
    assert [m["text"] for m in harness.mgmt.of_type(agent_conn, "message")] == ["two"]
    assert _send(harness, visitor_conn, cid, "m2", "two")["duplicate"] is True
    messages, gaps, _ = _catch_up(harness, agent_conn, cid)
    assert [m["text"] for m in messages] == ["one", "two"] and not gaps


def test_many_messages_after_a_gap_page_through_without_looping(harness, no_rate_limits, timeline):
    from chalicelib import messages as messages_module

    site, agent, agent_conn, visitor, visitor_conn = harness.chat()
    cid = visitor["conversation_id"]
    # a first send created the item and took seq 1, then its writer died
    assert conversations.create_reserved(site.site_id, visitor["visitor_id"], cid)
    Conversation(cid).update(actions=[Conversation.last_seq.add(1)])
    for i in range(60):
        _send(harness, agent_conn, cid, f"a{i}", f"agent says {i}")
    timeline(settings().seq_gap_seconds + 1)
    seen, gaps, replies = _catch_up(harness, visitor_conn, cid)
    assert gaps == {1} and [m["seq"] for m in seen] == list(range(2, 62)) and len(replies) == 2
    assert messages_module.MAX_GAPS_FILLED >= 1


def test_out_of_order_pushes_are_caught_up_by_the_contiguous_rule(harness):
    """Two senders: the agent's console gets seq 3 live but missed 2 while reconnecting. Resuming
    after the highest seq held (3) would skip 2 for good; the rule resumes after 1."""
    site, agent, agent_conn, visitor, visitor_conn = harness.chat()
    cid = visitor["conversation_id"]
    _send(harness, visitor_conn, cid, "v1", "one")
    harness.disconnect(agent_conn)
    _send(harness, visitor_conn, cid, "v2", "two")
    agent_conn2, _ = harness.connect(agent["token"])
    _send(harness, visitor_conn, cid, "v3", "three")
    held = {1, 3}
    synced_seq = max(n for n in range(0, 4) if all(s in held for s in range(1, n + 1)))
    messages, _, _ = _catch_up(harness, agent_conn2, cid, synced_seq=synced_seq)
    assert [m["text"] for m in messages] == ["two", "three"]
    skipping, _, _ = _catch_up(harness, agent_conn2, cid, synced_seq=max(held))
    assert skipping == []  # what the old rule would have fetched


def test_sync_pages_report_where_to_continue(harness):
    site, agent, agent_conn, visitor, visitor_conn = harness.chat()
    cid = visitor["conversation_id"]
    for i in range(7):
        _send(harness, visitor_conn, cid, f"m{i}", f"{i}")
    page = harness.reply(visitor_conn, {"action": "sync", "conversation_id": cid, "after_seq": 0, "limit": 3})
    assert page["has_more"] and page["next_after_seq"] == 3 and page["gaps"] == []
    last = harness.reply(visitor_conn, {"action": "sync", "conversation_id": cid, "after_seq": 6, "limit": 3})
    assert not last["has_more"] and last["next_after_seq"] == 7
    body = json.dumps(last)
    assert '"last_seq": 7' in body


# --- 8. a timely sweep ------------------------------------------------------------------------

def test_the_sweep_drops_in_parallel(harness, timeline, monkeypatch):
    site = harness.site()
    visitors = [harness.visitor(site.site_id) for _ in range(12)]
    conns = [harness.connect(v["token"])[0] for v in visitors]
    timeline(settings().heartbeat_timeout + 5)
    inflight, peak, lock = [0], [0], threading.Lock()
    barrier = threading.Barrier(4, timeout=10)
    original = harness.mgmt.delete_connection

    def slow_close(ConnectionId):
        with lock:
            inflight[0] += 1
            peak[0] = max(peak[0], inflight[0])
        try:
            barrier.wait()  # passes only when four closes are under way at once
        except threading.BrokenBarrierError:
            pass
        with lock:
            inflight[0] -= 1
        return original(ConnectionId)

    monkeypatch.setattr(harness.mgmt, "delete_connection", slow_close)
    report = sweep.sweep()
    assert sorted(report.dropped_ids) == sorted(conns) and peak[0] >= 4
    assert Site.get(site.site_id).site_id == site.site_id
