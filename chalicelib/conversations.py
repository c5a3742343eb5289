"""Conversations: access rules, creation, assignment to agents, claim, transfer, close, reopen, lists.

Every change of status or agent is one conditional write on the conversation item, so concurrent
claims, transfers, closes and re-queues cannot interleave: the loser is told ``conversation_changed``.
Agents' loads are counted from the site's open-conversations index when an assignment is made
(reads track the open count), so there is no counter to drift.

A visitor's session only *reserves* a conversation id (the visitor item's ``conversation_id``
pointer): a visitor who browses and never writes costs no conversation item. Until the first
message (or an agent's invitation) creates it, the reserved conversation is *virtual*: an unsaved
``Conversation`` in status ``new`` that the visitor's own reads (``load``) answer with, its live
connections kept on the visitor item (``live_conns``, chalicelib/connections.py). Agents never see
one: status ``new`` is in no list, and ``load`` builds one for the visitor alone.
"""
from __future__ import annotations

import functools
from collections import Counter
from typing import Any, Callable, Dict, Iterable, List, Optional, Tuple

from pynamodb.connection import Connection as PynamoConnection
from pynamodb.exceptions import DoesNotExist, TransactWriteError, UpdateError
from pynamodb.transactions import TransactWrite

from chalicelib import autoclose, availability, clock, connections, ids, outbox, paging, reports
from chalicelib.config import settings
from chalicelib.errors import KefuError, bad_request, conflict, forbidden, is_condition_failure, not_found
from chalicelib.models import OPEN_STATUSES, Connection, Conversation, Site, Visitor, as_dict
from chalicelib.tokens import Identity

LIST_LIMIT = 50
MAX_LIST_LIMIT = 100
PAGES_IN_VIEW = 10


def public_view(conversation: Conversation, visitor: Optional[Visitor] = None) -> Dict[str, Any]:
    """A conversation as clients see it, with what is known of its visitor."""
    return {
        "conversation_id": conversation.conversation_id,
        "site_id": conversation.site_id,
        "visitor_id": conversation.visitor_id,
        "visitor_name": visitor.name if visitor else None,
        "visitor_email": visitor.email if visitor else None,
        "visitor_phone": visitor.phone if visitor else None,
        "visitor_attributes": as_dict(visitor.attributes) if visitor else {},
        "visitor_verified": bool(visitor.verified) if visitor else False,
        "visitor_online": bool(as_dict(conversation.visitor_conns)),
        "status": shown_status(conversation),
        "agent_id": conversation.agent_id,
        "last_seq": int(conversation.last_seq or 0),
        "last_text": conversation.last_text,
        "visitor_read_seq": int(conversation.visitor_read_seq or 0),
        "agent_read_seq": int(conversation.agent_read_seq or 0),
        "current_page": (as_dict(visitor.current_page) or None) if visitor else None,
        "pages": [as_dict(p) for p in (visitor.pages or [])][-PAGES_IN_VIEW:] if visitor else [],
        "page_count": int(visitor.page_count or 0) if visitor else 0,
        "created_at": conversation.created_at,
        "updated_at": conversation.updated_at,
        "opened_at": conversation.opened_at,
        "closed_at": conversation.closed_at,
        "closed_by": conversation.closed_by,
        "labels": sorted(conversation.labels or ()),
        "first_response_at": conversation.first_response_at,
        "rating": ({"score": int(conversation.rating), "comment": conversation.rating_comment,
                    "at": conversation.rated_at} if conversation.rating is not None else None),
    }


def shown_status(conversation: Conversation) -> str:
    """The status clients see: a conversation nobody took yet is ``queued``."""
    return "queued" if conversation.status == "new" else conversation.status


# What agents see of a conversation but its visitor never does.
AGENT_ONLY_FIELDS = ("labels", "closed_by", "first_response_at")


def for_visitor(shown: Dict[str, Any]) -> Dict[str, Any]:
    """A conversation's view as its visitor gets it: without the agents' own fields."""
    return {k: v for k, v in shown.items() if k not in AGENT_ONLY_FIELDS}


def _visitor_of(conversation: Conversation) -> Optional[Visitor]:
    if is_virtual(conversation):  # built from the visitor item, read just before
        return conversation._reserved_by
    try:
        return Visitor.get(conversation.site_id, conversation.visitor_id)
    except DoesNotExist:
        return None


def view(conversation: Conversation) -> Dict[str, Any]:
    """One conversation's view: one GetItem for its visitor."""
    return public_view(conversation, _visitor_of(conversation))


def views(found: List[Conversation]) -> List[Dict[str, Any]]:
    """Many conversations' views: their visitors in one BatchGetItem."""
    keys = list(dict.fromkeys((c.site_id, c.visitor_id) for c in found))
    visitors = {(v.site_id, v.visitor_id): v for v in Visitor.batch_get(keys)} if keys else {}
    return [public_view(c, visitors.get((c.site_id, c.visitor_id))) for c in found]


def check_access(identity: Identity, conversation_id: Any) -> None:
    """What can be decided without a read: a visitor only ever touches their own conversation."""
    if not isinstance(conversation_id, str) or not conversation_id or len(conversation_id) > 64:
        raise bad_request("invalid_conversation_id", "conversation_id must be a string")
    if not identity.is_agent and conversation_id != identity.conversation_id:
        raise forbidden("not_in_conversation", "you are not in that conversation")


def load(identity: Identity, conversation_id: Any) -> Conversation:
    """Read a conversation the caller may see (visitor: their own; agent: their site's). A visitor's
    reserved conversation that has no item yet is answered virtual (``is_virtual``); agents never
    get one."""
    check_access(identity, conversation_id)
    conversation = Conversation.find(conversation_id)
    if conversation is None and not identity.is_agent:
        conversation = reserved(identity.site_id, identity.subject, conversation_id)
    if conversation is None or conversation.site_id != identity.site_id:
        # Same answer for another site's: its ids are not to be probed.
        raise not_found("conversation_not_found", "no such conversation")
    return conversation


def _now_ms() -> int:
    return int(clock.now() * 1000)


# --- creation -------------------------------------------------------------------------------

def new_id() -> str:
    return ids.random_id("conv", 12)


def virtual(visitor: Visitor, conversation_id: str) -> Conversation:
    """The visitor's reserved conversation as it is until someone writes: status ``new``, no
    messages, the live connections the visitor item holds for it. Never saved."""
    now = _now_ms()
    conversation = Conversation(conversation_id, site_id=visitor.site_id, visitor_id=visitor.visitor_id,
                                status="new", created_at=now, updated_at=now,
                                visitor_conns=as_dict(visitor.live_conns))
    conversation._reserved_by = visitor
    return conversation


def is_virtual(conversation: Conversation) -> bool:
    """Whether this is a reserved conversation without an item (``virtual``)."""
    return getattr(conversation, "_reserved_by", None) is not None


def reserved(site_id: str, visitor_id: str, conversation_id: str) -> Optional[Conversation]:
    """The visitor's reserved conversation, virtual, if the visitor item's pointer names
    ``conversation_id`` (called once its item was found missing); else None."""
    visitor = Visitor.find(site_id, visitor_id)
    if visitor is None:
        return None
    if visitor.conversation_id != conversation_id:
        return None
    return virtual(visitor, conversation_id)


def open_for_visitor(visitor: Visitor) -> Conversation:
    """The visitor's current conversation: their open one, or one in status ``new`` (virtual while
    nobody wrote in it: ``is_virtual``).

    A ``new`` conversation is not open yet: agents neither see nor get it until the first message
    (``open_on_first_message``), so page loads cannot flood them, and until then it is only an id
    reserved on the visitor item, so they cost no conversation item either. One per visitor, even
    for concurrent sessions: the visitor item's pointer is claimed with a conditional write; the
    loser uses the winner's.
    """
    for _ in range(3):
        current_id = visitor.conversation_id
        existing = Conversation.find(current_id) if current_id else None
        if current_id and existing is None:
            return virtual(visitor, current_id)  # reserved by an earlier session: nobody wrote yet
        if existing is not None and existing.status != "closed":
            return existing
        if _reserve(visitor, replacing=current_id, replacing_closed=existing is not None):
            return virtual(visitor, visitor.conversation_id)
        visitor.refresh(consistent_read=True)
    raise conflict("conversation_changed", "the visitor's conversation keeps changing; retry")


def _reserve(visitor: Visitor, replacing: Optional[str], replacing_closed: bool) -> bool:
    """Point the visitor item at a new conversation id (no conversation item is written), and (when
    it replaces a closed one) in one transaction with that one still being closed: a send
    reopening it at the same moment makes exactly one of the two win. The live connections of the
    old one are not the new one's. False if someone else won."""
    conversation_id = new_id()
    pointer_free = (Visitor.conversation_id.does_not_exist() if replacing is None
                    else Visitor.conversation_id == replacing)
    actions = [Visitor.conversation_id.set(conversation_id), Visitor.live_conns.set({})]
    try:
        if replacing_closed:
            with TransactWrite(connection=_transactions()) as transaction:
                transaction.condition_check(Conversation, replacing, condition=Conversation.status == "closed")
                transaction.update(visitor, actions=actions, condition=pointer_free)
        else:
            visitor.update(actions=actions, condition=pointer_free)
    except TransactWriteError as exc:
        if not _cancelled_by_a_condition(exc):
            raise
        return False
    except UpdateError as exc:
        if not is_condition_failure(exc):
            raise
        return False
    visitor.conversation_id, visitor.live_conns = conversation_id, {}
    return True


def create_reserved(site_id: str, visitor_id: str, conversation_id: str) -> bool:
    """Create the item of the visitor's reserved conversation (status ``new``): their first message
    needs it, or an agent's invitation. The put is conditioned on the item being absent and, in the
    same transaction, on the visitor item's pointer still naming this id, so nobody can create a
    conversation under any other id (and two first sends create one). True once the item exists
    (created here or meanwhile), False if the id is not the visitor's reserved one.

    Then the live connections recorded on the visitor item are copied into ``visitor_conns``.
    Read *after* the put, this misses no tab: a $connect (``connections.register``) first finds
    the item missing, then records its connection on the visitor item, then reads the conversation
    again. If its record on the visitor item came before this read, it is copied here; if after,
    then its read of the conversation comes after the put, finds the item and adds the connection
    itself. A tab that left meanwhile is not copied: each copy is conditioned on the connection's
    record still existing, which $disconnect deletes before it edits any roster.
    """
    now = _now_ms()
    conversation = Conversation(conversation_id, site_id=site_id, visitor_id=visitor_id, status="new",
                                created_at=now, updated_at=now)
    try:
        with TransactWrite(connection=_transactions()) as transaction:
            transaction.condition_check(Visitor, site_id, visitor_id,
                                        condition=Visitor.conversation_id == conversation_id)
            transaction.save(conversation, condition=Conversation.conversation_id.does_not_exist())
    except TransactWriteError as exc:
        if not _cancelled_by_a_condition(exc):
            raise
        pointer_moved = _failed_conditions(exc)[0]  # a transaction lists its condition checks first
        existing = Conversation.find(conversation_id)
        if pointer_moved or existing is None:
            return existing is not None
        # a concurrent first send created it: its tabs are copied before this send goes on too
        # (a copy is idempotent), so neither message is pushed to fewer tabs than the other
        conversation = existing
    _copy_live_connections(conversation)
    return True


def _copy_live_connections(conversation: Conversation) -> None:
    visitor = Visitor.find(conversation.site_id, conversation.visitor_id)
    if visitor is None:
        return
    live = as_dict(visitor.live_conns)
    for _ in range(3):
        if not live:
            return
        try:
            with TransactWrite(connection=_transactions()) as transaction:
                for connection_id in live:  # a transaction lists its condition checks first
                    transaction.condition_check(Connection, connection_id,
                                                condition=Connection.connection_id.exists())
                transaction.update(conversation, actions=[Conversation.visitor_conns[c].set(at)
                                                          for c, at in live.items()])
            return
        except TransactWriteError as exc:
            if not _cancelled_by_a_condition(exc):
                raise
            failed = _failed_conditions(exc)
            live = {c: at for (c, at), gone in zip(live.items(), failed) if not gone}  # without the tabs gone meanwhile


def current_of(visitor: Visitor) -> Optional[Conversation]:
    """The conversation the visitor item points to (any status), if it has an item."""
    return Conversation.find(visitor.conversation_id) if visitor.conversation_id else None


def transactions() -> PynamoConnection:
    return _transactions()


def cancelled_by_a_condition(exc: TransactWriteError) -> bool:
    return _cancelled_by_a_condition(exc)


def _transactions() -> PynamoConnection:
    cfg = settings()
    return _transaction_connection(cfg.region, cfg.dynamodb_endpoint)


@functools.lru_cache(maxsize=4)
def _transaction_connection(region: str, host: Optional[str]) -> PynamoConnection:
    """One per container, as the models' own: a new one per transaction was a new botocore client
    and a new TCP (on AWS, TLS) connection for every conversation created."""
    return PynamoConnection(region=region, host=host)


def _failed_conditions(exc: TransactWriteError) -> List[bool]:
    """Per item of a cancelled transaction, in the order DynamoDB got them (pynamodb sends condition
    checks, then deletes, puts, updates): whether its condition failed."""
    return [reason is not None and reason.code == "ConditionalCheckFailed"
            for reason in (exc.cancellation_reasons or [])] + [False] * 100


def _cancelled_by_a_condition(exc: TransactWriteError) -> bool:
    return getattr(exc, "cause_response_code", None) == "TransactionCanceledException" and any(
        reason is not None and reason.code == "ConditionalCheckFailed" for reason in exc.cancellation_reasons)


def open_on_first_message(site: Site, conversation: Conversation, sender_connection: Optional[str]) -> None:
    """A ``new`` conversation got its first message: it opens, is handed out, everyone is told
    (but the sender, whose reply is the ack)."""
    _open(site, conversation, None, exclude=sender_connection)


def _open(site: Site, conversation: Conversation, visitor: Optional[Visitor], exclude: Optional[str] = None) -> None:
    now = _now_ms()
    try:
        conversation.update(
            actions=[Conversation.status.set("queued"), Conversation.open_site_id.set(site.site_id),
                     Conversation.opened_at.set(now), Conversation.updated_at.set(now)],
            condition=Conversation.status == "new",
        )
    except UpdateError as exc:
        if not is_condition_failure(exc):
            raise
        conversation.refresh(consistent_read=True)
        return
    autoclose.arm(conversation.conversation_id, site.site_id, now / 1000)
    handed = _hand_out(site, conversation)
    reports.record(site.site_id, now, {"opened": 1}, agent_id=conversation.agent_id if handed else None)
    outbox.conversation_opened(conversation, handed)
    _announce(site, conversation, "created", exclude=exclude, visitor=visitor)


# --- assignment -----------------------------------------------------------------------------

def open_entries(site_id: str) -> List[Conversation]:
    """The site's open conversations, oldest opened first, as the open index holds them (keys,
    status, agent and visitor): one Query, reading only open conversations."""
    return list(Conversation.site_open_index.query(site_id))


def agent_loads(site_id: str, entries: Optional[List[Conversation]] = None) -> Counter:
    """Open conversations per agent, from the open index (or from ``entries`` already read from it)."""
    if entries is None:
        entries = open_entries(site_id)
    return Counter(c.agent_id for c in entries if c.status == "assigned" and c.agent_id)


def least_loaded_agent(site: Site, exclude: Optional[str] = None, prefer: Optional[str] = None,
                       loads: Optional[Counter] = None) -> Optional[str]:
    """The online agent to give a conversation to; agents who set themselves away get none."""
    away = availability.away_agents(site)
    online = [a for a in connections.online_agents(site) if a != exclude and a not in away]
    if not online:
        return None
    if prefer in online:
        return prefer
    if loads is None:
        loads = agent_loads(site.site_id)
    return min(online, key=lambda agent_id: (loads[agent_id], agent_id))


def _assign(conversation: Conversation, agent_id: str, expect_status: str, expect_agent: Optional[str]) -> None:
    condition = Conversation.status == expect_status
    condition &= (Conversation.agent_id == expect_agent) if expect_agent else Conversation.agent_id.does_not_exist()
    try:
        conversation.update(
            actions=[Conversation.status.set("assigned"), Conversation.agent_id.set(agent_id),
                     Conversation.updated_at.set(_now_ms())],
            condition=condition,
        )
    except UpdateError as exc:
        if not is_condition_failure(exc):
            raise
        raise conflict("conversation_changed", "the conversation changed; reload it")


def _hand_out(site: Site, conversation: Conversation, exclude: Optional[str] = None,
              prefer: Optional[str] = None) -> bool:
    """A queued conversation goes to an online agent (``prefer`` if online, else the least loaded)."""
    agent_id = least_loaded_agent(site, exclude=exclude, prefer=prefer)
    if agent_id is None:
        return False
    try:
        _assign(conversation, agent_id, expect_status="queued", expect_agent=None)
    except KefuError:  # taken or closed meanwhile
        return False
    return True


def assign_if_possible(site: Site, conversation: Conversation, exclude_agent: Optional[str] = None,
                       connecting: Optional[str] = None) -> bool:
    """Hand a queued conversation out and tell everyone. ``connecting`` is an agent connection still
    inside $connect (API Gateway answers 410 to posts to it): it asks for `state` once open."""
    if not _hand_out(site, conversation, exclude=exclude_agent):
        return False
    _announce(site, conversation, "assigned", exclude=connecting)
    return True


def assign_queued(site: Site, connecting: Optional[str] = None) -> int:
    """Hand every queued conversation to online agents, oldest first (an agent just came online)."""
    if not connections.online_agents(site):
        return 0
    entries = open_entries(site.site_id)
    loads = agent_loads(site.site_id, entries)
    assigned = 0
    for entry in entries:
        if entry.status != "queued":
            continue
        agent_id = least_loaded_agent(site, loads=loads)
        if agent_id is None:  # everyone online is away
            break
        try:
            _assign(entry, agent_id, expect_status="queued", expect_agent=None)
        except KefuError:
            continue
        loads[agent_id] += 1
        assigned += 1
        _announce(site, entry, "assigned", exclude=connecting)
    return assigned


def _announce(site: Site, conversation: Conversation, event: str, exclude: Optional[str] = None,
              visitor: Optional[Visitor] = None) -> Dict[str, Any]:
    """Tell the site's agents and the visitor; ``exclude`` is the caller, who gets the reply instead."""
    shown = public_view(conversation, visitor) if visitor is not None else view(conversation)
    frame = {"type": "conversation", "event": event, "conversation": shown}
    connections.push([t for t in connections.agent_connections(site) if t != exclude], frame)
    if event not in AGENT_ONLY_EVENTS:
        visitor_frame = {**frame, "conversation": for_visitor(shown)}
        connections.push([t for t in as_dict(conversation.visitor_conns) if t != exclude], visitor_frame)
    return shown


def announce(site: Site, conversation: Conversation, event: str, exclude: Optional[str] = None,
             visitor: Optional[Visitor] = None) -> Dict[str, Any]:
    """Tell the site's agents and the visitor's connections of a change (``exclude``: the caller)."""
    return _announce(site, conversation, event, exclude=exclude, visitor=visitor)


# Conversation events only the site's agents are told of.
AGENT_ONLY_EVENTS = ("labeled",)


# --- agents' actions ------------------------------------------------------------------------

def _agent_load(identity: Identity, conversation_id: Any) -> Conversation:
    if not identity.is_agent:
        raise forbidden("agents_only", "only agents can do that")
    return load(identity, conversation_id)


def claim(identity: Identity, conversation_id: Any, sender_connection: Optional[str] = None) -> Dict[str, Any]:
    conversation = _agent_load(identity, conversation_id)
    if conversation.status == "closed":
        raise conflict("conversation_closed", "the conversation is closed")
    if conversation.agent_id == identity.subject:
        return view(conversation)
    _assign(conversation, identity.subject, conversation.status, conversation.agent_id)
    return _announce(Site.get(identity.site_id), conversation, "assigned", exclude=sender_connection)


def transfer(identity: Identity, conversation_id: Any, to_agent_id: Any,
             sender_connection: Optional[str] = None) -> Dict[str, Any]:
    if not isinstance(to_agent_id, str) or not to_agent_id or len(to_agent_id) > 64:
        raise bad_request("invalid_agent_id", "agent_id must be a string")
    conversation = _agent_load(identity, conversation_id)
    if conversation.status == "closed":
        raise conflict("conversation_closed", "the conversation is closed")
    if conversation.agent_id == to_agent_id:
        return view(conversation)  # already theirs: nothing changes
    site = Site.get(identity.site_id)
    if to_agent_id not in connections.online_agents(site):
        raise conflict("agent_not_online", "that agent is not online")
    _assign(conversation, to_agent_id, conversation.status, conversation.agent_id)
    return _announce(site, conversation, "assigned", exclude=sender_connection)


def close(identity: Identity, conversation_id: Any, sender_connection: Optional[str] = None) -> Dict[str, Any]:
    conversation = _agent_load(identity, conversation_id)
    if conversation.status != "closed":
        closed = close_as(Site.get(identity.site_id), conversation, identity.subject, exclude=sender_connection)
        if closed is not None:
            return closed
    return view(conversation)


def close_as(site: Site, conversation: Conversation, closed_by: str, exclude: Optional[str] = None,
             condition: Any = None) -> Optional[Dict[str, Any]]:
    """Close an open conversation (``closed_by``: the agent, or "auto"), count its resolution, tell
    everyone. None when it changed meanwhile (``conversation`` then holds what it is now)."""
    now = _now_ms()
    expected = Conversation.status.is_in(*OPEN_STATUSES, "new")
    if condition is not None:
        expected &= condition
    try:
        conversation.update(
            actions=[Conversation.status.set("closed"), Conversation.open_site_id.remove(),
                     Conversation.closed_at.set(now), Conversation.updated_at.set(now),
                     Conversation.closed_site_id.set(conversation.site_id), Conversation.closed_by.set(closed_by)],
            condition=expected,
        )
    except UpdateError as exc:
        if not is_condition_failure(exc):
            raise
        conversation.refresh(consistent_read=True)  # closed (or written to) meanwhile
        return None
    outbox.conversation_closed(conversation)
    if conversation.opened_at is not None:
        reports.record(site.site_id, now, {"res_n": 1, "res_ms": max(0, now - int(conversation.opened_at))},
                       agent_id=conversation.agent_id)
    return _announce(site, conversation, "closed", exclude=exclude)


def requeue(site: Site, conversation: Conversation) -> bool:
    """Take an assigned conversation back from its (gone) agent; False if it changed meanwhile."""
    agent_id = conversation.agent_id
    try:
        conversation.update(
            actions=[Conversation.status.set("queued"), Conversation.agent_id.remove(),
                     Conversation.updated_at.set(_now_ms())],
            condition=(Conversation.status == "assigned") & (Conversation.agent_id == agent_id),
        )
    except UpdateError as exc:
        if not is_condition_failure(exc):
            raise
        return False
    if not assign_if_possible(site, conversation, exclude_agent=agent_id):
        _announce(site, conversation, "queued")
    return True


def assigned_to(site_id: str, agent_id: str) -> List[Conversation]:
    return [c for c in open_entries(site_id) if c.status == "assigned" and c.agent_id == agent_id]


# --- a visitor writing to a closed conversation ------------------------------------------------

def landing_for_visitor(identity: Identity, closed: Conversation) -> str:
    """Where a visitor's message to a closed conversation goes: the visitor's current conversation
    if another one is open (or reserved: its item is created now), else their current one
    (closed), reopened. Returns its id."""
    site = Site.get(identity.site_id)
    for _ in range(3):
        visitor = Visitor.find(identity.site_id, identity.subject)
        current_id = visitor.conversation_id if visitor else None
        target = closed
        if current_id and current_id != closed.conversation_id:
            current = Conversation.find(current_id)
            if current is None and create_reserved(identity.site_id, identity.subject, current_id):
                return current_id  # reserved by a newer session, nobody wrote there yet: it is created now
            if current is not None and current.status != "closed":
                return current_id
            if current is not None:
                target = current
        if target.status != "closed" or reopen(site, target, identity.subject):
            return target.conversation_id
        refreshed = Conversation.find(target.conversation_id)  # reopened by another send, or the visitor moved on
        if refreshed is not None and refreshed.status != "closed":
            return refreshed.conversation_id
    raise conflict("conversation_changed", "the visitor's conversation keeps changing; retry")


def reopen(site: Site, conversation: Conversation, visitor_id: str) -> bool:
    """Reopen a closed conversation, in one transaction with its still being the visitor's current
    one (so a session replacing it at the same moment cannot leave them two open). False if it
    was reopened meanwhile, or is no longer their current one."""
    previous_agent = conversation.agent_id
    now = _now_ms()
    try:
        with TransactWrite(connection=_transactions()) as transaction:
            transaction.update(
                conversation,
                actions=[Conversation.status.set("queued"), Conversation.open_site_id.set(site.site_id),
                         Conversation.opened_at.set(now), Conversation.agent_id.remove(),
                         Conversation.closed_at.remove(), Conversation.updated_at.set(now),
                         Conversation.closed_site_id.remove(), Conversation.closed_by.remove(),
                         Conversation.first_response_at.remove(), Conversation.first_response_id.remove()],
                condition=Conversation.status == "closed",
            )
            transaction.condition_check(Visitor, site.site_id, visitor_id,
                                        condition=Visitor.conversation_id == conversation.conversation_id)
    except TransactWriteError as exc:
        if not _cancelled_by_a_condition(exc):
            raise
        return False
    conversation.refresh(consistent_read=True)
    autoclose.arm(conversation.conversation_id, site.site_id, now / 1000)
    outbox.conversation_opened(conversation, _hand_out(site, conversation, prefer=previous_agent))
    _announce(site, conversation, "reopened")
    return True


# --- lists ----------------------------------------------------------------------------------

def _check_list_limit(limit: Any) -> int:
    if limit is None:
        return LIST_LIMIT
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_LIST_LIMIT:
        raise bad_request("invalid_limit", f"limit must be an integer from 1 to {MAX_LIST_LIMIT}")
    return limit


def list_for_agent(identity: Identity, include_closed: bool = False, cursor: Any = None,
                   limit: Any = None, closed: bool = False) -> Tuple[List[Dict[str, Any]], Optional[str]]:
    """One page of the site's open conversations (oldest opened first), of all of them (newest
    first), or (``closed``) of the closed ones, most recently closed first; and the cursor of the
    next page (None at the end). Bounded to fit one frame."""
    if not identity.is_agent:
        raise forbidden("agents_only", "only agents list conversations")
    limit = _check_list_limit(limit)
    if closed:
        if include_closed:
            raise bad_request("invalid_list", "closed and include_closed cannot be combined")
        return _closed_page(identity.site_id, cursor, limit)
    site_id = identity.site_id
    if include_closed:
        start = None
        if cursor is not None:
            created_at, conversation_id = paging.decode_cursor(cursor, (int, str))
            start = {"conversation_id": {"S": conversation_id}, "site_id": {"S": site_id},
                     "created_at": {"N": str(created_at)}}
        keys = Conversation.site_created_index.query(site_id, scan_index_forward=False, limit=limit + 1,
                                                     last_evaluated_key=start)
    else:
        start = None
        if cursor is not None:
            opened_at, conversation_id = paging.decode_cursor(cursor, (int, str))
            start = {"conversation_id": {"S": conversation_id}, "open_site_id": {"S": site_id},
                     "opened_at": {"N": str(opened_at)}}
        keys = Conversation.site_open_index.query(site_id, limit=limit + 1, last_evaluated_key=start)
    entries = list(keys)
    page = entries[:limit]
    by_id = {c.conversation_id: c for c in _batch_get(e.conversation_id for e in page)}
    rows = [(e, by_id[e.conversation_id]) for e in page if e.conversation_id in by_id
            # an open list skips what was closed since the (eventually consistent) index was read
            and (include_closed or by_id[e.conversation_id].status != "closed")]
    return _page_of(rows, entries, limit, lambda e: e.created_at if include_closed else e.opened_at)


def _closed_page(site_id: str, cursor: Any, limit: int) -> Tuple[List[Dict[str, Any]], Optional[str]]:
    """History: the sparse site-closed-index, newest closed first; it holds closed conversations
    only, so a page reads ``limit + 1`` keys and the page's items, however long the history."""
    start = None
    if cursor is not None:
        closed_at, conversation_id = paging.decode_cursor(cursor, (int, str))
        start = {"conversation_id": {"S": conversation_id}, "closed_site_id": {"S": site_id},
                 "closed_at": {"N": str(closed_at)}}
    entries = list(Conversation.site_closed_index.query(site_id, scan_index_forward=False, limit=limit + 1,
                                                        last_evaluated_key=start))
    page = entries[:limit]
    by_id = {c.conversation_id: c for c in _batch_get(e.conversation_id for e in page)}
    # the index is eventually consistent: one reopened since is not history any more
    rows = [(e, by_id[e.conversation_id]) for e in page
            if e.conversation_id in by_id and by_id[e.conversation_id].status == "closed"]
    return _page_of(rows, entries, limit, lambda e: e.closed_at)


def _page_of(rows: List[Tuple[Any, Conversation]], entries: List[Any], limit: int,
             position: Callable[[Any], Any]) -> Tuple[List[Dict[str, Any]], Optional[str]]:
    """A page of (index entry, conversation) rows as views, and the cursor after its last entry
    (``position``: that entry's index sort key); None when the index has nothing after it."""
    rendered = dict(zip((e.conversation_id for e, _ in rows), views([c for _, c in rows])))
    shown, last, left_over = paging.take(rows, limit, lambda row: rendered[row[0].conversation_id])
    if left_over:
        last_entry = last[0]
    elif len(entries) > limit:
        last_entry = entries[limit - 1]
    else:
        return shown, None
    return shown, paging.encode_cursor([int(position(last_entry)), last_entry.conversation_id])


def _batch_get(conversation_ids: Iterable[str]) -> List[Conversation]:
    wanted = list(conversation_ids)
    return list(Conversation.batch_get(wanted)) if wanted else []


def pages_of(identity: Identity, conversation_id: Any) -> Dict[str, Any]:
    """The visitor's recent pages (agents)."""
    conversation = _agent_load(identity, conversation_id)
    visitor = _visitor_of(conversation)
    pages = [as_dict(p) for p in (visitor.pages or [])] if visitor else []
    return {"type": "pages", "conversation_id": conversation.conversation_id,
            "visitor_id": conversation.visitor_id, "pages": pages}
