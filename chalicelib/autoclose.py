"""Auto-close: an open conversation with no message for ``KEFU_AUTO_CLOSE_HOURS`` is closed.

No scan and nothing per message: each open conversation has one timer, an item of the connections
table (role ``autoclose``) on the sweep's last-seen index, set to come due N hours after it opened,
as chalicelib/requeue.py does for agents. When the sweep runs a due timer it reads the conversation:
closed already, the timer is deleted; a message since (``updated_at``), the timer is moved to N
hours after that message; idle, it is closed (conditional on ``updated_at`` unchanged, so a message
arriving meanwhile wins) with ``closed_by: "auto"``. Closing removes it from the open index, from
which agents' loads are counted, so loads drop with no counter to fix.
"""
from __future__ import annotations

import logging
from typing import Optional

from pynamodb.exceptions import DeleteError, DoesNotExist

from chalicelib import clock, connections
from chalicelib.config import settings
from chalicelib.errors import is_condition_failure
from chalicelib.models import Connection, Conversation, Site

log = logging.getLogger("kefu.autoclose")

ROLE = "autoclose"
CLOSED_BY = "auto"
KEEP_SECONDS = 86400  # DynamoDB TTL backstop past the due time


def timer_id(conversation_id: str) -> str:
    return f"{ROLE}:{conversation_id}"  # API Gateway's ids never contain ':'


def idle_seconds() -> float:
    return settings().auto_close_hours * 3600


def arm(conversation_id: str, site_id: str, since: float) -> Optional[Connection]:
    """(Re)arm the conversation's timer to come due ``KEFU_AUTO_CLOSE_HOURS`` after ``since`` (s)."""
    if idle_seconds() <= 0:
        return None
    due = since + idle_seconds()
    timer = Connection(
        timer_id(conversation_id),
        role=ROLE,
        site_id=site_id,
        subject=conversation_id,
        conversation_id=conversation_id,
        connected_at=int(clock.now() * 1000),
        last_seen=due - settings().heartbeat_timeout,
        sweep_shard=connections.sweep_shard(timer_id(conversation_id)),
        expires_at=int(due) + KEEP_SECONDS,
    )
    timer.save()
    return timer


def run(timer: Connection) -> bool:
    """A due timer: close the conversation if it is idle, else move the timer. True if closed."""
    from chalicelib import conversations  # conversations arms timers: imported here, not at the top

    closed = False
    conversation = Conversation.find(timer.subject)
    if conversation is not None and conversation.status != "closed" and idle_seconds() > 0:
        last_activity = int(conversation.updated_at) / 1000
        if clock.now() < last_activity + idle_seconds():
            arm(conversation.conversation_id, conversation.site_id, last_activity)  # written to since
            return False
        try:
            site = Site.get(conversation.site_id)
        except DoesNotExist:
            site = None
        if site is not None:
            closed = conversations.close_as(
                site, conversation, CLOSED_BY,
                condition=Conversation.updated_at == conversation.updated_at) is not None
            if not closed and conversation.status != "closed":  # a message came meanwhile
                arm(conversation.conversation_id, conversation.site_id, int(conversation.updated_at) / 1000)
                return False
    try:  # unless re-armed meanwhile
        Connection(timer.connection_id).delete(condition=Connection.last_seen == timer.last_seen)
    except DeleteError as exc:
        if not is_condition_failure(exc):
            raise
    if closed:
        log.info("conversation %s of %s closed after %s idle hours", timer.subject, timer.site_id,
                 settings().auto_close_hours)
    return closed
