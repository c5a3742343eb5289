"""Live WebSocket connections: records, the identity behind each, presence and pushing frames.

A visitor's connections are listed on their conversation (``visitor_conns``), or, while it is only
reserved and has no item (chalicelib/conversations.py), on the visitor item (``live_conns``).

A connection's identity never changes during its life and API Gateway never reuses an id, so a
warm function keeps identities in memory: most frames need no read to learn who sent them.
"""
from __future__ import annotations

import logging
import zlib
from collections import OrderedDict
from typing import Any, Dict, Iterable, List, Optional, Tuple

from pynamodb.exceptions import DeleteError, DoesNotExist, UpdateError
from pynamodb.expressions.condition import size

from chalicelib import clock, delivery, sites
from chalicelib.config import settings
from chalicelib.errors import KefuError, is_condition_failure, not_found, rate_limited
from chalicelib.models import MAX_VISITOR_CONNECTIONS, OPEN_STATUSES, Connection, Conversation, Site, Visitor, as_dict
from chalicelib.tokens import Identity

log = logging.getLogger("kefu.connections")


class _Known:
    # Plain classes here, not dataclasses: each generated class costs the cold start of every
    # function a few tenths of a millisecond.
    __slots__ = ("identity", "last_seen")

    def __init__(self, identity: Identity, last_seen: float) -> None:
        self.identity = identity
        self.last_seen = last_seen  # last heartbeat written to DynamoDB (or read from it)


_CACHE_SIZE = 10_000
# API Gateway gives $connect up to 29 s (its integration timeout) and answers 410 until it returns.
CONNECT_WINDOW_SECONDS = 30
_known: "OrderedDict[str, _Known]" = OrderedDict()


def _remember(connection_id: str, identity: Identity, last_seen: float) -> None:
    _known[connection_id] = _Known(identity, last_seen)
    _known.move_to_end(connection_id)
    while len(_known) > _CACHE_SIZE:
        _known.popitem(last=False)


def forget_cache() -> None:
    _known.clear()


def sweep_shard(connection_id: str) -> int:
    return zlib.crc32(connection_id.encode()) % settings().sweep_shards


def _identity_of(record: Connection) -> Identity:
    return Identity(
        role=record.role,
        site_id=record.site_id,
        subject=record.subject,
        conversation_id=record.conversation_id,
    )


def _live_record(connection_id: str) -> Optional[Connection]:
    """The record, unless missing or past its TTL (DynamoDB deletes expired items lazily)."""
    record = Connection.find(connection_id)
    if record is None:
        return None
    if record.expires_at <= clock.now():
        return None
    return record


def identify(connection_id: str) -> Optional[Identity]:
    """Who is behind a connection: from memory, else one GetItem."""
    known = _known.get(connection_id)
    if known is not None:
        return known.identity
    record = _live_record(connection_id)
    if record is None:
        return None
    identity = _identity_of(record)
    _remember(connection_id, identity, record.last_seen)
    return identity


def register(connection_id: str, identity: Identity, site: Site) -> None:
    """$connect: store the record and add the connection to its presence roster."""
    now = clock.now()
    record = Connection(
        connection_id,
        role=identity.role,
        site_id=identity.site_id,
        subject=identity.subject,
        conversation_id=identity.conversation_id,
        connected_at=int(now * 1000),
        last_seen=now,
        sweep_shard=sweep_shard(connection_id),
        expires_at=int(now) + settings().connection_ttl,
    )
    if not identity.is_agent:  # the live visitors view's index (chalicelib/visitors.py)
        record.visitor_site_id = identity.site_id
        record.visitor_key = f"{identity.subject} {connection_id}"
    record.save()
    _remember(connection_id, identity, now)
    if identity.is_agent:
        first = identity.subject not in set(as_dict(site.agent_conns).values())
        site.update(actions=[Site.agent_conns[connection_id].set(identity.subject)])
        sites.remember_site(site)
        if first:
            others = [c for c in as_dict(site.agent_conns) if c != connection_id]
            frame = presence_frame(identity, "online")
            frame["availability"] = "away" if identity.subject in as_dict(site.agent_away) else "online"
            push(others, frame)
            if online_agents(site) == [identity.subject]:
                tell_visitors_agents_online(site, identity, "online")
    else:
        try:
            live, status, visitor = _register_visitor(connection_id, identity, int(now))
        except Exception:
            record.delete()
            _known.pop(connection_id, None)
            raise
        if len(live) == 1:
            if status in OPEN_STATUSES:
                push(agent_connections(site), presence_frame(identity, "online"))
            from chalicelib import visitors  # imports this module

            visitors.announce_arrival(site, identity.subject, visitor)


def _too_many() -> KefuError:
    return rate_limited("too_many_connections",
                        f"a visitor may have at most {MAX_VISITOR_CONNECTIONS} open connections")


def _register_visitor(connection_id: str, identity: Identity,
                      now: int) -> Tuple[Dict[str, Any], str, Optional[Visitor]]:
    """Add a visitor's connection to its conversation's roster: ``visitor_conns``, or, while the
    conversation is only reserved (no item: chalicelib/conversations.py), the visitor item's
    ``live_conns``. Returns the roster it joined, the conversation's status and the visitor item
    (when read).

    The order is what makes the first message's creation of the item miss no tab: the conversation
    is tried first; found missing, the connection is recorded on the visitor item and only *then*
    is the conversation read again. The creation copies the visitor item's connections after its
    put (conversations.create_reserved): either it sees this one, or this read sees the item and
    the connection is added to it here."""
    conversation = Conversation(identity.conversation_id)
    in_conversation = Conversation.visitor_conns[connection_id].set(now)
    room = size(Conversation.visitor_conns) < MAX_VISITOR_CONNECTIONS
    try:
        conversation.update(actions=[in_conversation], condition=Conversation.conversation_id.exists() & room)
        return as_dict(conversation.visitor_conns), conversation.status, None
    except UpdateError as exc:
        if not is_condition_failure(exc):
            raise
    visitor = _join_visitor_item(connection_id, identity, now)
    live = as_dict(visitor.live_conns)
    conversation = _conversation(identity.conversation_id)
    if conversation is None:
        return live, "new", visitor
    # created meanwhile (the first message): this connection joins its roster too
    try:
        conversation.update(actions=[in_conversation], condition=Conversation.conversation_id.exists() & room)
    except UpdateError as exc:
        _leave_visitor_item(connection_id, identity)
        if not is_condition_failure(exc):
            raise
        raise _too_many()
    return live, conversation.status, visitor


def _join_visitor_item(connection_id: str, identity: Identity, now: int) -> Visitor:
    """Record a connection of the visitor's reserved conversation on the visitor item; the item as updated."""
    visitor = Visitor(identity.site_id, identity.subject)
    try:
        visitor.update(actions=[Visitor.live_conns[connection_id].set(now)],
                       condition=(Visitor.conversation_id == identity.conversation_id)
                       & (size(Visitor.live_conns) < MAX_VISITOR_CONNECTIONS))
        return visitor
    except UpdateError as exc:
        if not is_condition_failure(exc):
            raise
    # the roster is full (on the conversation item, or on the visitor item), or the id is not theirs
    if _conversation(identity.conversation_id) is not None:
        raise _too_many()
    visitor = Visitor.find(identity.site_id, identity.subject)
    pointer = visitor.conversation_id if visitor else None
    if pointer == identity.conversation_id:
        raise _too_many()
    raise not_found("conversation_not_found", "no such conversation")


def _conversation(conversation_id: str) -> Optional[Conversation]:  # a seam for the race tests
    return Conversation.find(conversation_id)


def _leave_visitor_item(connection_id: str, identity: Identity) -> Optional[Visitor]:
    """Remove a connection from the visitor item's ``live_conns``; the item as updated, or None."""
    visitor = Visitor(identity.site_id, identity.subject)
    try:
        visitor.update(actions=[Visitor.live_conns[connection_id].remove()], condition=Visitor.live_conns.exists())
    except UpdateError:
        return None
    return visitor


def presence_frame(identity: Identity, status: str) -> Dict[str, Any]:
    frame: Dict[str, Any] = {"type": "presence", "role": identity.role, "id": identity.subject, "status": status}
    if identity.conversation_id:
        frame["conversation_id"] = identity.conversation_id
    return frame


def agent_connections(site: Site) -> List[str]:
    return list(as_dict(site.agent_conns))


def online_agents(site: Site) -> List[str]:
    return sorted(set(as_dict(site.agent_conns).values()))


# At most this many visitor connections hear an agent presence change at once: pushed from inside a
# $connect or $disconnect, a bigger fan-out would hold it too long. The rest (a big site's) learn it
# within the widget's 15 s poll while nobody is online, or from the agent's first message.
PRESENCE_FANOUT_LIMIT = 1000


def site_visitor_connections(site_id: str, limit: int) -> List[str]:
    """Up to ``limit`` live visitor connections of a site: a Query of the sparse site-visitors-index
    (its keys, about 100 bytes each), never a scan."""
    return [entry.visitor_key.split(" ", 1)[1]
            for entry in Connection.site_visitors_index.query(site_id, limit=limit, page_size=min(limit, 1000))]


def tell_visitors_agents_online(site: Site, identity: Identity, status: str) -> None:
    """The site's first agent came online, or its last went: every visitor's widget says so at
    once, with the count in the frame so that no widget has to ask (only on these two changes)."""
    frame = presence_frame(identity, status)
    frame["agents_online"] = len(online_agents(site))
    push(site_visitor_connections(site.site_id, PRESENCE_FANOUT_LIMIT), frame)


class Dropped:
    """What ``drop`` did."""
    __slots__ = ("identity", "agent_offline", "site")

    def __init__(self, identity: Identity) -> None:
        self.identity = identity
        self.agent_offline = False  # the agent's last connection went with it
        self.site: Optional[Site] = None


def drop(connection_id: str, identity: Optional[Identity] = None,
         silent_since: Optional[float] = None) -> Optional[Dropped]:
    """Forget a connection everywhere: its record, its roster entry, and tell the other side.

    Used by $disconnect, by a 410 on delivery and by the heartbeat sweep; safe to repeat.
    With ``silent_since`` the record is only deleted if its last heartbeat is older than that,
    so a connection that pinged meanwhile survives (returns None).
    """
    if identity is None:
        known = _known.get(connection_id)
        if known is not None:
            identity = known.identity
        else:
            record = Connection.find(connection_id)
            if record is None:
                return None
            identity = _identity_of(record)
    if silent_since is not None:
        try:
            Connection(connection_id).delete(condition=Connection.last_seen < silent_since)
        except DeleteError:
            return None  # it pinged after the sweep looked, or is already gone
    else:
        Connection(connection_id).delete()
    _known.pop(connection_id, None)
    dropped = Dropped(identity)
    if identity.is_agent:
        site = Site(identity.site_id)
        try:
            site.update(
                actions=[Site.agent_conns[connection_id].remove()],
                condition=Site.site_id.exists(),
            )
        except UpdateError:
            return dropped
        sites.remember_site(site)
        dropped.site = site
        if identity.subject not in set(as_dict(site.agent_conns).values()):
            dropped.agent_offline = True
            push(agent_connections(site), presence_frame(identity, "offline"))
            if not online_agents(site):
                tell_visitors_agents_online(site, identity, "offline")
    else:
        conversation = Conversation(identity.conversation_id)
        try:
            conversation.update(
                actions=[Conversation.visitor_conns[connection_id].remove()],
                condition=Conversation.conversation_id.exists(),
            )
            remaining, status = as_dict(conversation.visitor_conns), conversation.status
        except UpdateError as exc:
            if not is_condition_failure(exc):
                return dropped
            # no item: a reserved conversation, its roster on the visitor item (_register_visitor)
            visitor = _leave_visitor_item(connection_id, identity)
            if visitor is None:
                return dropped
            remaining, status = as_dict(visitor.live_conns), "new"
        if not remaining:
            try:
                site = sites.cached_site(identity.site_id)
            except DoesNotExist:
                return dropped
            dropped.site = site
            agents = agent_connections(site)
            if status in OPEN_STATUSES:
                push(agents, presence_frame(identity, "offline"))
            push(agents, {"type": "visitor", "event": "left", "visitor_id": identity.subject,
                          "visitor": {"visitor_id": identity.subject, "online": False}})
    return dropped


def push(connection_ids: Iterable[str], frame: Dict[str, Any]) -> List[str]:
    """Deliver a frame to connections concurrently; forget those API Gateway says are gone."""
    gone = delivery.post_many(connection_ids, frame)
    for connection_id in gone:
        forget_gone(connection_id)
    return gone


def forget_gone(connection_id: str) -> None:
    """A post met 410. API Gateway also answers 410 while a connection is still inside $connect,
    so a connection that young is kept: what the push carried is in the `state` and `sync` its
    client asks for once open. Older ones are gone for good and dropped."""
    record = _live_record(connection_id)
    if record is None:
        _known.pop(connection_id, None)
        return
    if clock.now() * 1000 - record.connected_at < CONNECT_WINDOW_SECONDS * 1000:
        log.info("connection %s answered 410 while connecting; kept", connection_id)
        return
    log.info("connection %s is gone (410); dropping it", connection_id)
    drop(connection_id, _identity_of(record))


def heartbeat_write_interval() -> float:
    """How often a ping may write last-seen: the configured interval, but never so rarely that
    a connection pinging steadily could look stale to the sweep."""
    cfg = settings()
    return min(cfg.heartbeat_interval, cfg.heartbeat_timeout / 3)


def heartbeat(connection_id: str) -> bool:
    """A ping. Writes last-seen at most once per heartbeat interval; False if the connection is unknown.

    Last-seen only moves forward: of two pings handled at once, the earlier one's write may land
    last, and must not make the connection look older than the later ping (while this function's
    memory, holding the later time, keeps the next pings from writing)."""
    now = clock.now()
    known = _known.get(connection_id)
    if known is None:
        record = _live_record(connection_id)
        if record is None:
            return False
        known = _Known(_identity_of(record), record.last_seen)
        _remember(connection_id, known.identity, known.last_seen)
    if now - known.last_seen < heartbeat_write_interval():
        return True
    try:
        Connection(connection_id).update(
            actions=[Connection.last_seen.set(now)],
            condition=Connection.connection_id.exists() & (Connection.last_seen < now),
        )
    except UpdateError as exc:
        if not is_condition_failure(exc):
            return False
        record = _live_record(connection_id)  # gone, or a later ping's write is there already
        if record is None:
            return False
        now = record.last_seen
    known.last_seen = max(known.last_seen, now)
    return True
