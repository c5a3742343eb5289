"""The per-message DynamoDB budget of docs/dynamodb.md, measured: no Scan, <= 1 read, <= 3 writes."""
from __future__ import annotations

from bench.metering import counting


def test_send_costs_one_read_three_writes(harness):
    site, agent, agent_conn, visitor, visitor_conn = harness.chat()
    cid = visitor["conversation_id"]
    harness.reply(visitor_conn, {"action": "send", "conversation_id": cid, "client_msg_id": "warm", "text": "x"})
    with counting() as calls:
        for i in range(5):
            for conn in (visitor_conn, agent_conn):
                ack = harness.reply(conn, {"action": "send", "conversation_id": cid, "client_msg_id": f"{conn[:6]}{i}".replace("=", ""), "text": "x"})
                assert ack["type"] == "ack"
    assert calls.scans == 0
    assert calls.reads == 10 and calls.writes == 30, calls.by_operation()


def test_retry_costs_no_new_message_writes(harness):
    site = harness.site()
    visitor = harness.visitor(site.site_id)
    conn, _ = harness.connect(visitor["token"])
    frame = {"action": "send", "conversation_id": visitor["conversation_id"], "client_msg_id": "r", "text": "x"}
    harness.reply(conn, frame)
    with counting() as calls:
        assert harness.reply(conn, frame)["duplicate"] is True
    # one refused conditional put, one read of the original
    assert (calls.reads, calls.writes) == (1, 1), calls.by_operation()


def test_ping_writes_at_most_once_per_interval(harness):
    site = harness.site()
    visitor = harness.visitor(site.site_id)
    conn, _ = harness.connect(visitor["token"])
    with counting() as calls:
        for _ in range(20):
            assert harness.reply(conn, {"action": "ping"})["type"] == "pong"
    assert calls.writes == 0 and calls.reads == 0  # connected moments ago: nothing to refresh
