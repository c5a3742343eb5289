"""The DynamoDB budget of docs/dynamodb.md, measured in calls and in billed units (item sizes,
index writes included): per text message at most 1 read unit, 3 write units, no Scan."""
from __future__ import annotations

from bench.metering import counting, item_size
from chalicelib.models import Conversation, Visitor

PAGE = {"action": "page_view", "url": "https://shop.example/products/teapots/yixing-clay-teapot-200ml?ref=home",
        "title": "Yixing clay teapot, 200 ml | Shop", "referrer": "https://www.example-search.com/?q=teapot"}


def _raw_item(model, *key):
    return model.get(*key).serialize()


def test_send_costs_one_read_unit_and_three_write_units(harness, no_rate_limits):
    site, agent, agent_conn, visitor, visitor_conn = harness.chat()
    cid = visitor["conversation_id"]
    for _ in range(50):  # an ordinary visit: many pages, read marks, a preview of the last message
        harness.reply(visitor_conn, PAGE)
    harness.reply(visitor_conn, {"action": "send", "conversation_id": cid, "client_msg_id": "warm", "text": "x" * 200})
    # the first agent reply costs one write more, once per conversation (next test): steady state after it
    harness.reply(agent_conn, {"action": "send", "conversation_id": cid, "client_msg_id": "first", "text": "hi"})
    with counting() as calls:
        for i in range(5):
            for conn in (visitor_conn, agent_conn):
                ack = harness.reply(conn, {"action": "send", "conversation_id": cid,
                                           "client_msg_id": f"{conn[:6]}{i}".replace("=", ""),
                                           "text": "您好，我想问一下这个紫砂茶壶什么时候发货？" * 3})
                assert ack["type"] == "ack"
    assert calls.scans == 0
    assert calls.reads == 10 and calls.writes == 20, calls.by_operation()
    assert calls.read_units <= 10 * 1 and calls.write_units <= 10 * 3, calls.units()
    assert item_size(_raw_item(Conversation, cid)) < 1024


def test_the_first_agent_reply_adds_one_write_once_and_a_note_none(harness, no_rate_limits):
    """The report's first response time is counted at the first agent reply (one UpdateItem of the
    day's report item); every later reply, and any internal note, costs the usual two writes."""
    site, agent, agent_conn, visitor, visitor_conn = harness.chat(opened=True)
    cid = visitor["conversation_id"]

    def send(client_msg_id, **extra):
        with counting() as calls:
            ack = harness.reply(agent_conn, {"action": "send", "conversation_id": cid, "client_msg_id": client_msg_id,
                                             "text": "您好", **extra})
        assert ack["type"] == "ack", ack
        return calls

    note = send("note1", note=True)
    assert note.writes == 2, note.by_operation()  # a note is no reply: nothing counted
    first, second = send("reply1"), send("reply2")
    assert first.writes == 3 and first.by_operation()["UpdateItem kefu-test-reports"] == 1, first.by_operation()
    assert second.writes == 2 and first.reads == second.reads, (first.by_operation(), second.by_operation())


def test_page_views_never_grow_the_conversation(harness, no_rate_limits):
    site, agent, agent_conn, visitor, visitor_conn = harness.chat(opened=True)
    cid = visitor["conversation_id"]
    before = item_size(_raw_item(Conversation, cid))
    for i in range(60):
        harness.reply(visitor_conn, {**PAGE, "url": f"{PAGE['url']}&page={i}"})
    assert item_size(_raw_item(Conversation, cid)) == before
    stored = Visitor.get(site.site_id, visitor["visitor_id"])
    assert stored.page_count == 60 and len(stored.pages) == 10
    assert stored.pages[-1]["url"].endswith("&page=59")  # the newest kept, the oldest dropped
    assert item_size(_raw_item(Visitor, site.site_id, visitor["visitor_id"])) < 4096


def test_the_worst_conversation_item_is_bounded(harness):
    site = harness.site()
    agent = harness.agent(site.site_id)
    agent_conn, _ = harness.connect(agent["token"])
    visitor = harness.visitor(site.site_id, name="名" * 100, attributes={"plan": "x" * 3000})
    conns = [harness.connect(visitor["token"])[0] for _ in range(20)]
    assert harness.connect(visitor["token"])[1] == 429  # the 21st connection
    harness.reply(conns[0], {"action": "send", "conversation_id": visitor["conversation_id"],
                             "client_msg_id": "long", "text": "长" * 4000})
    assert item_size(_raw_item(Conversation, visitor["conversation_id"])) < 2048


def test_a_retry_stores_nothing_and_gives_its_seq_back(harness):
    site = harness.site()
    visitor = harness.visitor(site.site_id)
    conn, _ = harness.connect(visitor["token"])
    cid = visitor["conversation_id"]
    frame = {"action": "send", "conversation_id": cid, "client_msg_id": "r", "text": "x"}
    harness.reply(conn, frame)
    with counting() as calls:
        assert harness.reply(conn, frame)["duplicate"] is True
    # the seq update, the refused put, the read of the original, the newest message (the preview
    # to put back) and the seq given back with it
    assert calls.by_operation() == {"UpdateItem kefu-test-conversations": 2, "PutItem kefu-test-messages": 1,
                                    "GetItem kefu-test-messages": 1, "Query kefu-test-messages": 1}, calls.by_operation()
    assert calls.write_units == 3 and calls.read_units == 2  # both reads consistent
    assert Conversation.get(cid).last_seq == 1


def test_ping_writes_at_most_once_per_interval(harness):
    site = harness.site()
    visitor = harness.visitor(site.site_id)
    conn, _ = harness.connect(visitor["token"])
    with counting() as calls:
        for _ in range(20):
            assert harness.reply(conn, {"action": "ping"})["type"] == "pong"
    assert calls.writes == 0 and calls.reads == 0  # connected moments ago: nothing to refresh


def test_agent_connect_reads_track_open_conversations_not_history(harness):
    site = harness.site()
    agent = harness.agent(site.site_id)
    conn, _ = harness.connect(agent["token"])
    for i in range(40):
        visitor = harness.visitor(site.site_id)
        harness.say(visitor)
        if i >= 3:
            harness.reply(conn, {"action": "close", "conversation_id": visitor["conversation_id"]})
    harness.disconnect(conn)
    with counting() as calls:
        conn, status = harness.connect(agent["token"])
        state = harness.reply(conn, {"action": "state"})
    assert status == 200 and len(state["conversations"]) == 3
    assert calls.scans == 0
    # $connect: the agent (its standing, read at every connect), the site and the open index (3
    # entries, to hand out queued ones); state: the site, the open index, 3 conversations and their
    # 3 visitors, and the site's 1 agent (names, for transfer and messages). Never the 37 closed ones.
    assert calls.items_read == (1 + 1 + 3) + (1 + 3 + 3 + 3 + 1), calls.by_operation()
