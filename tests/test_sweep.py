"""The heartbeat sweep against moto: stale dropped, fresh kept, pings mid-sweep kept, idempotent."""
from __future__ import annotations

import time

import pytest

from bench.metering import counting
from chalicelib import clock, connections, conversations, sweep
from chalicelib.config import settings
from chalicelib.models import Connection, Conversation, Site, as_dict


def _setup(harness):
    return harness.chat()


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
