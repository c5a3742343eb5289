"""Handing a departed agent's conversations back to the queue, on timers that survive failures.

A timer is an item of the connections table (role ``requeue``) whose ``last_seen`` is set so that
the heartbeat sweep finds it stale exactly when it comes due; the sweep runs it, then deletes it.
It is written before the agent's connection is dropped, so a function that dies at any later
point leaves the timer for the next sweep: never a conversation held by an agent who is gone.
"""
from __future__ import annotations

import logging

from pynamodb.exceptions import DeleteError, DoesNotExist

from chalicelib import clock, connections, conversations
from chalicelib.config import settings
from chalicelib.errors import is_condition_failure
from chalicelib.models import Connection, Site, as_dict

log = logging.getLogger("kefu.requeue")

ROLE = "requeue"
KEEP_SECONDS = 86400  # DynamoDB TTL backstop for a timer nobody runs


def timer_id(site_id: str, agent_id: str) -> str:
    return f"{ROLE}:{site_id}:{agent_id}"  # API Gateway's ids never contain ':'


def schedule(site_id: str, agent_id: str, delay_seconds: float) -> Connection:
    """(Re)arm the agent's timer to come due ``delay_seconds`` from now."""
    now = clock.now()
    due = now + delay_seconds
    timer = Connection(
        timer_id(site_id, agent_id),
        role=ROLE,
        site_id=site_id,
        subject=agent_id,
        connected_at=int(now * 1000),
        last_seen=due - settings().heartbeat_timeout,
        sweep_shard=connections.sweep_shard(timer_id(site_id, agent_id)),
        expires_at=int(due) + KEEP_SECONDS,
    )
    timer.save()
    return timer


def run(timer: Connection) -> int:
    """A due timer: unless the agent is back online, re-queue (or hand to a colleague) every open
    conversation still assigned to them and tell their visitors. Returns how many moved."""
    agent_id = timer.subject
    moved = 0
    try:
        site = Site.get(timer.site_id)
    except DoesNotExist:
        site = None
    if site is not None and agent_id not in connections.online_agents(site):
        for conversation in conversations.assigned_to(site.site_id, agent_id):
            if conversations.requeue(site, conversation):
                moved += 1
                connections.push(list(as_dict(conversation.visitor_conns)),
                                 {"type": "presence", "role": "agent", "id": agent_id, "status": "offline",
                                  "conversation_id": conversation.conversation_id})
    try:  # unless re-armed meanwhile (the agent left again): then the new timer stands
        Connection(timer.connection_id).delete(condition=Connection.last_seen == timer.last_seen)
    except DeleteError as exc:
        if not is_condition_failure(exc):
            raise
    if moved:
        log.info("agent %s of %s gone: %d conversations handed back", agent_id, timer.site_id, moved)
    return moved
