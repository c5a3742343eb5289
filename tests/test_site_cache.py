"""The warm cache of the site item (the agents' roster), read on every frame of a busy site:
read at most once per KEFU_SITE_CACHE_SECONDS per function, and never the cause of a missed push."""
from __future__ import annotations

import pytest

from bench.metering import counting
from chalicelib import sites
from chalicelib.config import settings

SITES_GET = "GetItem kefu-test-sites"


@pytest.fixture
def site_cache(monkeypatch, timeline, no_rate_limits):
    """The cache on (1 s), on a movable clock; an agent's $connect hold is recorded, not slept (tests
    move the clock past it themselves: tokens issued on a clock ahead of real time are refused)."""
    monkeypatch.setenv("KEFU_SITE_CACHE_SECONDS", "1")
    settings.cache_clear()
    slept = []

    monkeypatch.setattr(sites.time, "sleep", slept.append)
    return slept


def _send(harness, conn, cid, client_msg_id):
    ack = harness.reply(conn, {"action": "send", "conversation_id": cid, "client_msg_id": client_msg_id, "text": "hi"})
    assert ack["type"] == "ack", ack
    return ack


def test_sends_within_the_window_read_the_site_once(harness, site_cache, timeline):
    site, agent, agent_conn, visitor, visitor_conn = harness.chat(opened=True)
    cid = visitor["conversation_id"]
    timeline(5)  # whatever was read while setting up is old now
    with counting() as calls:
        for i in range(5):
            _send(harness, visitor_conn, cid, f"a{i}")
            timeline(0.1)
    assert calls.by_operation().get(SITES_GET) == 1, calls.by_operation()
    with counting() as calls:
        timeline(1.0)
        _send(harness, visitor_conn, cid, "after-window")
        harness.reply(visitor_conn, {"action": "read", "conversation_id": cid, "seq": 1})
    assert calls.by_operation().get(SITES_GET) == 1, calls.by_operation()  # read again once, then shared


def test_without_the_cache_every_send_reads_the_site(harness, no_rate_limits, timeline):
    site, agent, agent_conn, visitor, visitor_conn = harness.chat(opened=True)
    cid = visitor["conversation_id"]
    with counting() as calls:
        for i in range(3):
            _send(harness, visitor_conn, cid, f"b{i}")
    assert calls.by_operation().get(SITES_GET) == 3, calls.by_operation()


def test_agent_connect_answers_only_once_older_copies_have_expired(harness, site_cache, timeline):
    site, agent, agent_conn, visitor, visitor_conn = harness.chat(opened=True)
    cid = visitor["conversation_id"]
    timeline(5)
    before = sites.cached_site(site.site_id)  # a copy another function instance read before the join
    read_at = sites._recent[site.site_id][0]
    site_cache.clear()
    second_tab, status = harness.connect(agent["token"], origin="https://console.example")
    assert status == 200
    assert sum(site_cache) == pytest.approx(1.0, abs=0.01)  # held for the cache's lifetime
    timeline(sum(site_cache))
    assert second_tab not in before.agent_conns.as_dict()
    sites.remember_site(before, read_at)  # that other instance still holds its old copy
    _send(harness, visitor_conn, cid, "after-join")
    pushed = [f for f in harness.mgmt.of_type(second_tab, "message") if f["client_msg_id"] == "after-join"]
    assert len(pushed) == 1  # the old copy had expired by the time the connection was open


def test_a_stale_copy_would_miss_a_new_agent_without_the_hold(harness, site_cache, timeline):
    """What the hold is for: a copy read before the join, still fresh, does not name the new connection."""
    site, agent, agent_conn, visitor, visitor_conn = harness.chat(opened=True)
    cid = visitor["conversation_id"]
    timeline(5)
    before = sites.cached_site(site.site_id)
    read_at = sites._recent[site.site_id][0]
    second_tab, _ = harness.connect(agent["token"], origin="https://console.example")
    sites.remember_site(before, read_at + 1.0)  # as if read just now, after the hold
    _send(harness, visitor_conn, cid, "stale")
    assert not [f for f in harness.mgmt.of_type(second_tab, "message") if f["client_msg_id"] == "stale"]


def test_a_roster_change_made_by_this_function_is_seen_at_once(harness, site_cache, timeline):
    site, agent, agent_conn, visitor, visitor_conn = harness.chat(opened=True)
    cid = visitor["conversation_id"]
    _send(harness, visitor_conn, cid, "fills-the-cache")
    harness.disconnect(agent_conn)  # this function removed it from the roster and kept the new item
    harness.mgmt.take(agent_conn)
    with counting() as calls:
        _send(harness, visitor_conn, cid, "after-leave")
    assert harness.mgmt.take(agent_conn) == []
    assert SITES_GET not in calls.by_operation()
