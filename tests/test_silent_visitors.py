"""Visitors who never write cost no conversation item (issue 16).

A session reserves a conversation id on the visitor item; the first message (or an agent's
invitation) creates the conversation item; until then the visitor's own reads answer an empty
``new`` conversation and their live connections are kept on the visitor item."""
from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

from bench.metering import counting, item_size
from chalicelib import connections, conversations, messages, tokens
from chalicelib.models import Conversation, Message, Visitor, as_dict

PAGE = {"action": "page_view", "url": "https://shop.example/teapots", "title": "Teapots"}


def _send(harness, conn, cid, client_msg_id, text="hello"):
    return harness.reply(conn, {"action": "send", "conversation_id": cid, "client_msg_id": client_msg_id,
                                "text": text})


def _visitor_item(site_id, visitor_id):
    return Visitor.get(site_id, visitor_id, consistent_read=True)


def test_a_visitor_who_browses_and_leaves_creates_no_conversation(harness):
    site = harness.site()
    agent = harness.agent(site.site_id)
    agent_conn, _ = harness.connect(agent["token"])
    first = harness.visitor(site.site_id)
    pages = [first] + [harness.visitor(site.site_id, visitor_id=first["visitor_id"]) for _ in range(2)]
    cid = first["conversation_id"]
    assert {p["conversation_id"] for p in pages} == {cid} and all(p["last_seq"] == 0 for p in pages)
    tabs = [harness.connect(p["token"])[0] for p in pages[1:]]
    assert as_dict(_visitor_item(site.site_id, first["visitor_id"]).live_conns).keys() == set(tabs)
    for tab in tabs:
        assert harness.reply(tab, PAGE)["type"] == "page_view_ok"
        state = harness.reply(tab, {"action": "state"})["conversation"]
        assert state["conversation_id"] == cid and state["last_seq"] == 0 and state["visitor_online"] is True
        synced = harness.reply(tab, {"action": "sync", "conversation_id": cid, "after_seq": 0})
        assert synced["messages"] == [] and synced["gaps"] == [] and synced["last_seq"] == 0
        assert synced["next_after_seq"] == 0 and synced["has_more"] is False
        too_far = harness.reply(tab, {"action": "sync", "conversation_id": cid, "after_seq": 1})
        assert too_far["code"] == "seq_out_of_range"
        assert harness.reply(tab, {"action": "read", "conversation_id": cid, "seq": 0})["type"] == "read"
        assert harness.reply(tab, {"action": "read", "conversation_id": cid, "seq": 1})["code"] == "seq_out_of_range"
        assert harness.frame(tab, {"action": "typing", "conversation_id": cid, "is_typing": True}) == []
    rest = harness.rest("GET", f"/v1/conversations/{cid}/messages?after_seq=0", token=first["token"])
    assert rest.status_code == 200 and rest.json_body["messages"] == []
    # agents saw them arrive and leave, never a conversation
    assert [f["event"] for f in harness.mgmt.of_type(agent_conn, "visitor")][:1] == ["arrived"]
    assert harness.reply(agent_conn, {"action": "list", "include_closed": True})["conversations"] == []
    assert harness.reply(agent_conn, {"action": "sync", "conversation_id": cid, "after_seq": 0})["code"] == \
        "conversation_not_found"  # the reserved id is the visitor's alone
    for tab in tabs:
        harness.disconnect(tab)
    assert harness.mgmt.of_type(agent_conn, "visitor")[-1]["event"] == "left"
    assert as_dict(_visitor_item(site.site_id, first["visitor_id"]).live_conns) == {}
    assert Conversation.count() == 0 and Message.count(cid) == 0


def test_the_first_message_creates_the_conversation_opens_it_and_reaches_the_agent(harness):
    site = harness.site()
    agent = harness.agent(site.site_id)
    agent_conn, _ = harness.connect(agent["token"])
    visitor = harness.visitor(site.site_id)
    cid = visitor["conversation_id"]
    tab, other_tab = harness.connect(visitor["token"])[0], harness.connect(visitor["token"])[0]
    assert Conversation.count() == 0
    ack = _send(harness, tab, cid, "first", "Is this teapot in stock?")
    assert ack["type"] == "ack" and ack["conversation_id"] == cid and ack["seq"] == 1
    assert Conversation.count() == 1
    stored = Conversation.get(cid)
    assert stored.status == "assigned" and stored.agent_id == agent["agent_id"]
    assert stored.site_id == site.site_id and stored.visitor_id == visitor["visitor_id"]
    assert set(as_dict(stored.visitor_conns)) == {tab, other_tab}  # the tabs came along
    assert [f["event"] for f in harness.mgmt.of_type(agent_conn, "conversation")][:1] == ["created"]
    assert [f["text"] for f in harness.mgmt.of_type(agent_conn, "message")] == ["Is this teapot in stock?"]
    assert [f["text"] for f in harness.mgmt.of_type(other_tab, "message")] == ["Is this teapot in stock?"]
    # the agent's reply reaches both tabs; a tab closing now leaves the conversation's roster
    _send(harness, agent_conn, cid, "reply", "Yes, it is.")
    assert [f["text"] for f in harness.mgmt.of_type(tab, "message")] == ["Yes, it is."]
    harness.disconnect(other_tab)
    assert set(as_dict(Conversation.get(cid).visitor_conns)) == {tab}
    # a later session of theirs is in it, with its seq
    again = harness.visitor(site.site_id, visitor_id=visitor["visitor_id"])
    assert again["conversation_id"] == cid and again["last_seq"] == 2 and Conversation.count() == 1


def _reply_reaches(harness, agent_conn, cid, tab):
    harness.mgmt.take(tab)
    _send(harness, agent_conn, cid, "agent-reply", "How can I help?")
    assert [f["text"] for f in harness.mgmt.of_type(tab, "message")] == ["How can I help?"]


def _first_send(site_id, visitor):
    identity = tokens.Identity("visitor", site_id, visitor["visitor_id"], visitor["conversation_id"])
    ack = messages.send(identity, {"conversation_id": visitor["conversation_id"], "client_msg_id": "first",
                                   "text": "hello"})
    assert ack["seq"] == 1


def test_a_tab_connecting_while_the_first_message_creates_the_item_is_copied(harness, monkeypatch):
    """The first message's copy reads the visitor item after the tab recorded itself there."""
    site = harness.site()
    agent = harness.agent(site.site_id)
    agent_conn, _ = harness.connect(agent["token"])
    visitor = harness.visitor(site.site_id)
    original = connections._conversation
    sent = []

    def send_first_then_read(conversation_id):
        if not sent:  # the tab is on the visitor item now; the first message is stored before it looks again
            _first_send(site.site_id, visitor)
            sent.append(set(as_dict(Conversation.get(conversation_id).visitor_conns)))
        return original(conversation_id)

    monkeypatch.setattr(connections, "_conversation", send_first_then_read)
    tab, status = harness.connect(visitor["token"])
    assert status == 200 and sent == [{tab}]  # the creation copied it
    assert tab in as_dict(Conversation.get(visitor["conversation_id"]).visitor_conns)
    _reply_reaches(harness, agent_conn, visitor["conversation_id"], tab)


def test_a_tab_recording_itself_after_the_first_message_copied_the_tabs_adds_itself(harness, monkeypatch):
    """The tab found no item, the first message created it and copied the tabs (not this one), then
    the tab recorded itself on the visitor item: its second look finds the item and joins it."""
    site = harness.site()
    agent = harness.agent(site.site_id)
    agent_conn, _ = harness.connect(agent["token"])
    visitor = harness.visitor(site.site_id)
    original = connections._join_visitor_item
    copied = []

    def first_message_in_between(connection_id, identity, now):
        _first_send(site.site_id, visitor)
        copied.append(set(as_dict(Conversation.get(visitor["conversation_id"]).visitor_conns)))
        return original(connection_id, identity, now)

    monkeypatch.setattr(connections, "_join_visitor_item", first_message_in_between)
    tab, status = harness.connect(visitor["token"])
    assert status == 200 and copied == [set()]  # the creation could not have seen it
    assert tab in as_dict(Conversation.get(visitor["conversation_id"]).visitor_conns)
    _reply_reaches(harness, agent_conn, visitor["conversation_id"], tab)


def test_a_tab_that_left_before_the_copy_is_not_copied(harness, monkeypatch):
    site = harness.site()
    harness.connect(harness.agent(site.site_id)["token"])
    visitor = harness.visitor(site.site_id)
    tab, gone = harness.connect(visitor["token"])[0], harness.connect(visitor["token"])[0]
    original = conversations._copy_live_connections

    def leave_first(conversation):
        connections.Connection(gone).delete()  # its $disconnect deleted the record, then found the item
        original(conversation)

    monkeypatch.setattr(conversations, "_copy_live_connections", leave_first)
    assert _send(harness, tab, visitor["conversation_id"], "first")["seq"] == 1
    assert set(as_dict(Conversation.get(visitor["conversation_id"]).visitor_conns)) == {tab}


def test_two_first_messages_at_once_create_one_conversation(harness):
    site = harness.site()
    harness.connect(harness.agent(site.site_id)["token"])
    visitor = harness.visitor(site.site_id)
    cid = visitor["conversation_id"]
    tabs = [harness.connect(visitor["token"])[0] for _ in range(2)]
    barrier = threading.Barrier(2)

    def send(n):
        barrier.wait()
        return [f for f in harness.frame(tabs[n], {"action": "send", "conversation_id": cid,
                                                   "client_msg_id": f"m{n}", "text": f"tab {n}"})
                if f["type"] == "ack"][0]

    with ThreadPoolExecutor(max_workers=2) as pool:
        acks = list(pool.map(send, range(2)))
    assert sorted(a["seq"] for a in acks) == [1, 2] and {a["conversation_id"] for a in acks} == {cid}
    assert Conversation.count() == 1 and Message.count(cid) == 2
    assert Conversation.get(cid).last_seq == 2 and set(as_dict(Conversation.get(cid).visitor_conns)) == set(tabs)


def test_an_invitation_of_a_silent_visitor_creates_it_assigned(harness):
    site = harness.site()
    agent = harness.agent(site.site_id)
    agent_conn, _ = harness.connect(agent["token"])
    visitor = harness.visitor(site.site_id)
    tab, _ = harness.connect(visitor["token"])
    assert Conversation.count() == 0
    reply = harness.reply(agent_conn, {"action": "invite", "visitor_id": visitor["visitor_id"], "text": "Hi there"})
    assert reply["type"] == "invited" and reply["conversation"]["conversation_id"] == visitor["conversation_id"]
    stored = Conversation.get(visitor["conversation_id"])
    assert Conversation.count() == 1 and stored.status == "assigned" and stored.agent_id == agent["agent_id"]
    assert [f.get("event") for f in harness.mgmt.of_type(tab, "conversation")] == ["invited"]
    assert [f["text"] for f in harness.mgmt.of_type(tab, "message")] == ["Hi there"]


def test_a_session_after_close_reserves_a_new_id_without_an_item(harness):
    site, agent, agent_conn, visitor, tab = harness.chat(opened=True)
    old = visitor["conversation_id"]
    harness.reply(agent_conn, {"action": "close", "conversation_id": old})
    fresh = harness.visitor(site.site_id, visitor_id=visitor["visitor_id"])
    assert fresh["conversation_id"] != old and fresh["last_seq"] == 0
    assert Conversation.count() == 1 and Conversation.get(old).status == "closed"
    item = _visitor_item(site.site_id, visitor["visitor_id"])
    assert item.conversation_id == fresh["conversation_id"] and as_dict(item.live_conns) == {}
    new_tab, _ = harness.connect(fresh["token"])
    state = harness.reply(new_tab, {"action": "state"})["conversation"]
    assert state["conversation_id"] == fresh["conversation_id"] and state["last_seq"] == 0
    assert Conversation.count() == 1
    # a late creation under the old id (a first send that lost every race) finds it closed and
    # takes none of the new reservation's tabs
    assert conversations.create_reserved(site.site_id, visitor["visitor_id"], old)
    assert new_tab not in as_dict(Conversation.get(old).visitor_conns)
    assert _send(harness, new_tab, fresh["conversation_id"], "again")["seq"] == 1 and Conversation.count() == 2


def test_no_item_can_be_created_under_an_id_that_is_not_the_visitors_reserved_one(harness):
    site = harness.site()
    harness.connect(harness.agent(site.site_id)["token"])
    visitor = harness.visitor(site.site_id)
    other = harness.visitor(site.site_id)
    tab, _ = harness.connect(visitor["token"])
    # the token binds one id: another visitor's reserved id, or a made-up one, is refused before any write
    for cid in (other["conversation_id"], "conv_madeupmadeupmade"):
        assert _send(harness, tab, cid, "x")["code"] == "not_in_conversation"
    # a validly signed token for an id that is not their reservation creates nothing either
    forged, _ = tokens.issue(tokens.Identity("visitor", site.site_id, visitor["visitor_id"], "conv_notreserved0"), 60)
    response = harness.rest("POST", "/v1/conversations/conv_notreserved0/messages",
                            {"client_msg_id": "x", "text": "hi"}, token=forged)
    assert response.status_code == 404 and response.json_body["code"] == "conversation_not_found"
    assert harness.connect(forged)[1] != 200
    # nor under another visitor's reserved id
    theirs, _ = tokens.issue(tokens.Identity("visitor", site.site_id, visitor["visitor_id"],
                                             other["conversation_id"]), 60)
    response = harness.rest("POST", f"/v1/conversations/{other['conversation_id']}/messages",
                            {"client_msg_id": "y", "text": "hi"}, token=theirs)
    assert response.status_code == 404
    assert not conversations.create_reserved(site.site_id, visitor["visitor_id"], other["conversation_id"])
    assert Conversation.count() == 0 and Message.count("conv_notreserved0") == 0


def test_a_reserved_conversation_holds_at_most_20_tabs(harness):
    site = harness.site()
    visitor = harness.visitor(site.site_id)
    tabs = [harness.connect(visitor["token"]) for _ in range(20)]
    assert all(status == 200 for _, status in tabs)
    assert harness.connect(visitor["token"])[1] == 429
    harness.disconnect(tabs[0][0])
    assert harness.connect(visitor["token"])[1] == 200
    assert Conversation.count() == 0


def test_a_silent_visitor_costs_no_conversation_write(harness):
    """A new visitor's page load, one tab's $connect and $disconnect: the visitor item and the
    connection record, no conversation item (it was a 4-unit TransactWriteItems per new visitor)."""
    site = harness.site()
    harness.connect(harness.agent(site.site_id)["token"])
    with counting() as session:
        visitor = harness.visitor(site.site_id)
    with counting() as again:
        harness.visitor(site.site_id, visitor_id=visitor["visitor_id"])
    with counting() as connect:
        tab, _ = harness.connect(visitor["token"])
    with counting() as disconnect:
        harness.disconnect(tab)
    for calls in (session, again, connect, disconnect):
        assert calls.scans == 0 and not any(k.startswith(("TransactWriteItems", "PutItem kefu-test-conversations"))
                                            for k in calls.by_operation()), calls.by_operation()
    assert session.writes == 2 and session.write_units == 2, session.by_operation()  # the rate limit, the visitor
    assert again.writes == 2, again.by_operation()
    # $connect: the record, the refused conversation update, the visitor item's roster
    assert connect.writes == 3 and connect.by_operation()["UpdateItem kefu-test-visitors"] == 1, connect.by_operation()
    assert disconnect.writes == 3, disconnect.by_operation()
    assert Conversation.count() == 0
    assert item_size(Visitor.get(site.site_id, visitor["visitor_id"]).serialize()) < 400
