"""The heartbeat sweep against moto: stale dropped, fresh kept, pings mid-sweep kept, idempotent."""
from __future__ import annotations

import time

from bench.metering import counting
from chalicelib import clock, connections, conversations, sweep
from chalicelib.config import settings
from chalicelib.models import Connection, Conversation, as_dict


def _setup(harness):
    return harness.chat(opened=True)


def test_stale_connection_swept_fresh_kept(harness, timeline):
    site, agent, agent_conn, visitor, visitor_conn = _setup(harness)
    timeline(settings().heartbeat_timeout + 5)
    connections.forget_cache()  # as a new function would be
    harness.reply(agent_conn, {"action": "ping"})  # the agent is alive, the visitor went silent
    report = sweep.sweep()
    assert report.dropped_ids == [visitor_conn]
    assert Connection.count(visitor_conn) == 0 and Connection.count(agent_conn) == 1
    assert visitor_conn in harness.mgmt.deleted  # closed through the Management API
    assert not as_dict(Conversation.get(visitor["conversation_id"]).visitor_conns)
    offline = harness.mgmt.of_type(agent_conn, "presence")[-1]
    assert offline["status"] == "offline" and offline["role"] == "visitor"


def test_sweeping_twice_changes_nothing_the_second_time(harness, timeline):
    _setup(harness)
    timeline(settings().heartbeat_timeout + 5)
    first = sweep.sweep()
    assert first.dropped == 2
    with counting() as calls:
        second = sweep.sweep()
    assert second.dropped == 0 and second.examined == 0
    assert calls.writes == 0


def test_connection_that_pings_mid_sweep_is_kept(harness, timeline, monkeypatch):
    site, agent, agent_conn, visitor, visitor_conn = _setup(harness)
    timeline(settings().heartbeat_timeout + 5)
    original = connections.drop

    def drop_after_a_ping(connection_id, identity=None, silent_since=None):
        # the visitor's ping lands between the index read and the delete
        connections.heartbeat(connection_id)
        return original(connection_id, identity, silent_since)

    monkeypatch.setattr(connections, "drop", drop_after_a_ping)
    report = sweep.sweep()
    assert report.kept == 2 and report.dropped == 0
    assert Connection.count(visitor_conn) == 1


def test_dead_agents_conversation_is_requeued_and_visitor_told(harness, timeline):
    site, agent, agent_conn, visitor, visitor_conn = _setup(harness)
    assert Conversation.get(visitor["conversation_id"]).status == "assigned"
    timeline(settings().heartbeat_timeout + 5)
    connections.forget_cache()
    harness.reply(visitor_conn, {"action": "ping"})
    report = sweep.sweep()
    assert report.dropped_ids == [agent_conn] and report.requeued == 1
    conversation = Conversation.get(visitor["conversation_id"])
    assert conversation.status == "queued" and conversation.agent_id is None
    frames = harness.mgmt.frames[visitor_conn]
    assert any(f["type"] == "presence" and f["role"] == "agent" and f["status"] == "offline" for f in frames)
    assert any(f["type"] == "conversation" and f["event"] == "queued" for f in frames)
    assert conversations.agent_loads(site.site_id)[agent["agent_id"]] == 0


def test_dead_agents_conversation_goes_to_a_live_colleague(harness, timeline):
    site, agent, agent_conn, visitor, visitor_conn = _setup(harness)
    colleague = harness.agent(site.site_id, email="cy@shop.example")
    timeline(settings().heartbeat_timeout + 5)
    colleague_conn, status = harness.connect(colleague["token"])  # logged in earlier, connects now
    assert status == 200
    connections.forget_cache()
    harness.reply(visitor_conn, {"action": "ping"})
    sweep.sweep()
    conversation = Conversation.get(visitor["conversation_id"])
    assert conversation.status == "assigned" and conversation.agent_id == colleague["agent_id"]


def test_sweep_stops_at_its_time_budget_and_the_next_run_continues(harness, timeline):
    _setup(harness)
    timeline(settings().heartbeat_timeout + 5)
    budget = iter([10_000, 0, 0, 0, 0, 0, 0, 0])
    first = sweep.sweep(time_left_ms=lambda: next(budget))
    assert first.complete is False and first.dropped == 1
    second = sweep.sweep()
    assert second.complete is True and second.dropped == 1


def test_heartbeat_writes_once_per_interval(harness, timeline):
    site, agent, agent_conn, visitor, visitor_conn = _setup(harness)
    with counting() as calls:
        for _ in range(3):
            timeline(settings().heartbeat_interval / 3 + 0.01)
            for _ in range(5):
                harness.reply(visitor_conn, {"action": "ping"})
    assert calls.writes == 1


def test_expired_record_treated_as_absent(harness, timeline):
    site, agent, agent_conn, visitor, visitor_conn = _setup(harness)
    timeline(settings().connection_ttl + 1)
    connections.forget_cache()
    reply = harness.reply(visitor_conn, {"action": "ping"})
    assert connections.identify(visitor_conn) is None
    assert reply["type"] == "error" and reply["code"] == "connection_unknown"
    assert Connection.get(visitor_conn).last_seen < clock.now() - settings().connection_ttl


def test_sweep_reads_track_stale_connections_not_live_ones(harness, timeline):
    from bench.sweep_reads import seed_connections

    now = clock.now()
    seed_connections(live=300, stale=7, now=now)
    with counting() as calls:
        report = sweep.sweep()
    assert report.dropped == 7
    assert calls.scans == 0
    assert calls.items_read == 7  # the index returned the stale ones only


def test_sweep_drops_the_longest_silent_first_across_shards(harness, monkeypatch):
    """A backlog (more stale connections than threads) delays the newest, never the most overdue."""
    oldest = clock.now() - settings().heartbeat_timeout - 60
    ids = [f"stale{i:02d}=" for i in range(12)]
    for i, connection_id in enumerate(ids):  # silent for 60 s, 59 s, ... beyond the timeout
        Connection(connection_id, role="visitor", site_id="s", subject=f"v{i}", conversation_id=f"c{i}",
                   connected_at=0, last_seen=oldest + i, sweep_shard=connections.sweep_shard(connection_id),
                   expires_at=int(clock.now()) + 3600).save()
    assert len({connections.sweep_shard(c) for c in ids}) > 1
    monkeypatch.setenv("KEFU_SWEEP_THREADS", "1")
    settings.cache_clear()
    order = []
    original = connections.drop
    monkeypatch.setattr(connections, "drop", lambda cid, *a, **k: order.append(cid) or original(cid, *a, **k))
    try:
        assert sweep.sweep().examined == 12
    finally:
        settings.cache_clear()
    assert order == ids


def test_sockets_are_closed_only_once_every_stale_one_is_reported(harness, timeline, monkeypatch):
    site = harness.site()
    agent = harness.agent(site.site_id)
    agent_conn, _ = harness.connect(agent["token"])
    visitor_conns = []
    for i in range(6):
        visitor = harness.visitor(site.site_id)
        visitor_conns.append(harness.connect(visitor["token"])[0])
        sent = harness.frame(visitor_conns[-1], {"action": "send", "conversation_id": visitor["conversation_id"],
                                                 "client_msg_id": f"m{i}", "text": "hello"})
        assert any(f["type"] == "ack" for f in sent)  # the conversation is open: agents see the visitor
    timeline(settings().heartbeat_timeout + 5)
    harness.reply(agent_conn, {"action": "ping"})
    events = []
    original_post, original_delete = harness.mgmt.post_to_connection, harness.mgmt.delete_connection
    monkeypatch.setattr(harness.mgmt, "post_to_connection",
                        lambda ConnectionId, Data: events.append("told") or original_post(ConnectionId=ConnectionId, Data=Data))
    monkeypatch.setattr(harness.mgmt, "delete_connection",
                        lambda ConnectionId: events.append("closed") or original_delete(ConnectionId=ConnectionId))
    report = sweep.sweep()
    assert sorted(report.dropped_ids) == sorted(visitor_conns)
    # agents are told of each (presence offline, and the live visitors' "left") before any socket closes
    assert events == ["told"] * 12 + ["closed"] * 6
    assert set(visitor_conns) <= set(harness.mgmt.deleted)


def test_overlapping_runs_in_one_process_drop_each_connection_once(harness, timeline, monkeypatch):
    import threading

    site = harness.site()
    conns = [harness.connect(harness.visitor(site.site_id)["token"])[0] for _ in range(8)]
    timeline(settings().heartbeat_timeout + 5)
    second_done = threading.Event()
    attempts = []
    original = connections.drop

    def slow_drop(connection_id, *args, **kwargs):
        attempts.append(connection_id)
        second_done.wait(10)  # the first run holds its claims while the second one runs
        return original(connection_id, *args, **kwargs)

    monkeypatch.setattr(connections, "drop", slow_drop)
    first = []
    runner = threading.Thread(target=lambda: first.append(sweep.sweep()))
    runner.start()
    deadline = time.monotonic() + 10
    while len(attempts) < len(conns) and time.monotonic() < deadline:  # all eight under way
        time.sleep(0.01)
    second = sweep.sweep()
    second_done.set()
    runner.join(10)
    assert second.examined == 0
    assert sorted(first[0].dropped_ids) == sorted(conns) and sorted(attempts) == sorted(conns)


def test_a_heartbeat_that_lands_late_never_moves_last_seen_back(harness, timeline, monkeypatch):
    """Two pings of one connection handled at once: the earlier one's write lands last. Last-seen
    must keep the later ping, or a live connection looks older than it is, and its function's
    cached last-seen (the later one) keeps the next pings from writing: swept while pinging."""
    import threading

    site, agent, agent_conn, visitor, visitor_conn = _setup(harness)
    interval = connections.heartbeat_write_interval()
    timeline(interval)
    earlier = clock.now()
    held, release = threading.Event(), threading.Event()
    original = Connection.update

    def update(self, *args, **kwargs):
        if threading.current_thread().name == "earlier-ping":
            held.set()
            release.wait(10)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(Connection, "update", update)
    first = []
    ping = threading.Thread(target=lambda: first.append(connections.heartbeat(visitor_conn)), name="earlier-ping")
    ping.start()
    assert held.wait(10)
    timeline(interval)
    assert connections.heartbeat(visitor_conn)  # the later ping's write lands first
    release.set()
    ping.join(10)
    assert first == [True]
    stored = Connection.get(visitor_conn, consistent_read=True).last_seen
    assert stored == earlier + interval
    assert connections._known[visitor_conn].last_seen <= stored
