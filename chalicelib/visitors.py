"""Live visitors: everyone on a site now, shown to its agents and updated live; agents invite them.

A site's online visitors are found through the connections table's sparse site-visitors-index
(visitor connections only, keyed by visitor id then connection id, so a visitor's tabs are
adjacent): a page reads the keys of at most ``limit + 1`` visitors' connections and their visitor
items in one BatchGetItem, never a scan. Agents are told as visitors arrive (their first live
connection), move (a page view) and leave (their last connection goes): ``visitor`` frames.

A visit is what happens between ``VISIT_GAP_SECONDS`` of silence: its start, pages and referrer
are kept on the visitor item (sessions.py starts one, tracking.py counts its pages).
"""
from __future__ import annotations

import re
from typing import Any, Dict, List, Optional, Tuple

from pynamodb.exceptions import DoesNotExist, TransactWriteError, UpdateError
from pynamodb.transactions import TransactWrite

from chalicelib import clock, connections, conversations, paging
from chalicelib.errors import bad_request, conflict, forbidden, is_condition_failure, not_found
from chalicelib.models import Connection, Conversation, Site, Visitor, as_dict
from chalicelib.tokens import Identity

VISIT_GAP_SECONDS = 30 * 60
LIST_LIMIT = 50
MAX_LIST_LIMIT = 100
_VISITOR_ID = re.compile(r"^[\x21-\x7e]{1,200}$")


def _agents_only(identity: Identity) -> None:
    if not identity.is_agent:
        raise forbidden("agents_only", "only agents can do that")


def new_visit_actions(now: float, first: bool, pages: int = 0, referrer: Optional[str] = None) -> List[Any]:
    """The update actions that start a visit (a new visitor's first, or one after a silence)."""
    return [Visitor.visit_started_at.set(int(now * 1000)), Visitor.visit_pages.set(pages),
            Visitor.visits.set(1) if first else Visitor.visits.add(1),
            Visitor.visit_referrer.set(referrer) if referrer else Visitor.visit_referrer.remove()]


def visit_is_over(visitor: Visitor, now: float) -> bool:
    return visitor.visit_started_at is None or (visitor.last_seen_at or 0) < now - VISIT_GAP_SECONDS


def view(visitor: Visitor, online: bool = True) -> Dict[str, Any]:
    """A visitor as the live view shows them."""
    page = as_dict(visitor.current_page)
    started = int(visitor.visit_started_at or 0) or None
    return {
        "visitor_id": visitor.visitor_id,
        "url": page.get("url"),
        "title": page.get("title"),
        "visit_started_at": started,
        "time_on_site": max(0, int(clock.now() - started / 1000)) if started else 0,  # seconds
        "pages_this_visit": int(visitor.visit_pages or 0),
        "page_count": int(visitor.page_count or 0),
        "referrer": visitor.visit_referrer,
        "returning": int(visitor.visits or 1) > 1,
        "name": visitor.name,
        "email": visitor.email,
        "verified": bool(visitor.verified),
        "attributes": as_dict(visitor.attributes),
        "conversation_id": visitor.conversation_id,
        "online": online,
    }


# --- the live list ------------------------------------------------------------------------------

def _check_limit(limit: Any) -> int:
    if limit is None:
        return LIST_LIMIT
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_LIST_LIMIT:
        raise bad_request("invalid_limit", f"limit must be an integer from 1 to {MAX_LIST_LIMIT}")
    return limit


def _online_ids(site_id: str, after: Optional[str], wanted: int) -> Tuple[List[str], bool]:
    """Up to ``wanted`` distinct visitor ids with a live connection, in id order after ``after``;
    and whether more follow. Reads at most ``wanted + 1`` visitors' keys (each has at most
    MAX_VISITOR_CONNECTIONS connections)."""
    # " " sorts below every character of an id: "<id>!" is above all of "<id> <connection>" keys
    condition = Connection.visitor_key > f"{after}!" if after is not None else None
    found: List[str] = []
    for entry in Connection.site_visitors_index.query(site_id, range_key_condition=condition, page_size=wanted * 2):
        visitor_id = entry.visitor_key.split(" ", 1)[0]
        if found and found[-1] == visitor_id:
            continue
        if len(found) == wanted:
            return found, True
        found.append(visitor_id)
    return found, False


def page(identity: Identity, cursor: Any = None, limit: Any = None) -> Dict[str, Any]:
    """One page of the site's online visitors (by visitor id) and the cursor of the next one."""
    _agents_only(identity)
    limit = _check_limit(limit)
    after = paging.decode_cursor(cursor, (str,))[0] if cursor is not None else None
    ids, more = _online_ids(identity.site_id, after, limit)
    found = {v.visitor_id: v for v in Visitor.batch_get([(identity.site_id, i) for i in ids])} if ids else {}
    present = [found[i] for i in ids if i in found]
    shown, last, left_over = paging.take(present, limit, view)
    next_cursor = None
    if left_over or more:  # after the last one shown (or read: their items may be gone meanwhile)
        next_cursor = paging.encode_cursor([last.visitor_id if last is not None else ids[-1]])
    return {"type": "visitors", "visitors": shown, "next_cursor": next_cursor}


# --- pushes -------------------------------------------------------------------------------------

def _tell_agents(site: Site, event: str, visitor: Visitor) -> None:
    connections.push(connections.agent_connections(site),
                     {"type": "visitor", "event": event, "visitor_id": visitor.visitor_id, "visitor": view(visitor)})


def announce_arrival(site: Site, visitor_id: str, visitor: Optional[Visitor] = None) -> None:
    """A visitor's first live connection: agents see them arrive (one GetItem, only if agents are
    online and the caller has not just read the item)."""
    if not connections.agent_connections(site):
        return
    if visitor is None:
        try:
            visitor = Visitor.get(site.site_id, visitor_id)
        except DoesNotExist:
            return
    _tell_agents(site, "arrived", visitor)


def announce_move(site: Site, visitor: Visitor) -> None:
    """A page view (``visitor`` is the updated item): agents see the new page."""
    _tell_agents(site, "moved", visitor)


# --- invitations --------------------------------------------------------------------------------

def invite(identity: Identity, frame: Dict[str, Any], connection_id: Optional[str]) -> Dict[str, Any]:
    """An agent starts a chat with a browsing visitor: the visitor's conversation opens assigned to
    the agent, visitor and agents are told (``conversation`` event ``invited``, the widget opens),
    then the agent's text is sent as the conversation's first message (exactly once per
    ``client_msg_id``, like any send)."""
    from chalicelib import ids, messages

    _agents_only(identity)
    visitor_id = frame.get("visitor_id")
    if not isinstance(visitor_id, str) or not _VISITOR_ID.match(visitor_id):
        raise bad_request("invalid_visitor_id", "visitor_id must be a visitor's id")
    client_msg_id = frame.get("client_msg_id") or ids.random_id("inv", 16)
    text = frame.get("text")
    if text is None or messages.check_send_fields(client_msg_id, text, None) is None:
        raise bad_request("empty_message", "an invitation needs text")
    try:
        visitor = Visitor.get(identity.site_id, visitor_id, consistent_read=True)
    except DoesNotExist:
        raise not_found("visitor_not_found", "no such visitor on this site")
    site = Site.get(identity.site_id)
    conversation = _open_for_agent(site, visitor, identity.subject)
    shown = conversations.announce(site, conversation, "invited", exclude=connection_id, visitor=visitor)
    ack = messages.send(identity, {"conversation_id": conversation.conversation_id, "client_msg_id": client_msg_id,
                                   "text": text}, sender_connection=connection_id)
    return {"type": "invited", "visitor_id": visitor_id, "conversation": shown, "ack": ack}


def _open_for_agent(site: Site, visitor: Visitor, agent_id: str) -> Conversation:
    """The visitor's current conversation, open and assigned to ``agent_id``: a reserved one is
    created (conversations.create_reserved, with the visitor's live connections), a ``new`` one opens,
    a queued one is claimed, a closed one (the visitor's tabs are still on it) is reopened in one
    transaction with its still being their current one. Each step is one conditional write."""
    for _ in range(3):
        conversation = conversations.current_of(visitor)
        if conversation is None:  # reserved (or never reserved): its item is created, in status new
            reserved = conversations.open_for_visitor(visitor)
            if conversations.is_virtual(reserved):
                conversations.create_reserved(site.site_id, visitor.visitor_id, reserved.conversation_id)
            conversation = conversations.current_of(visitor)
            if conversation is None:
                visitor.refresh(consistent_read=True)
                continue
        status = conversation.status
        if status == "assigned" and conversation.agent_id == agent_id:
            return conversation
        if status == "assigned":
            raise conflict("visitor_in_conversation", "the visitor is already chatting with another agent")
        now = int(clock.now() * 1000)
        actions = [Conversation.status.set("assigned"), Conversation.agent_id.set(agent_id),
                   Conversation.updated_at.set(now)]
        if status != "queued":
            actions += [Conversation.open_site_id.set(site.site_id), Conversation.opened_at.set(now)]
        if status == "closed":
            actions += [Conversation.closed_at.remove(), Conversation.closed_site_id.remove()]
        condition = (Conversation.status == status) & Conversation.agent_id.does_not_exist()
        try:
            if status == "closed":
                with TransactWrite(connection=conversations.transactions()) as transaction:
                    transaction.update(conversation, actions=actions, condition=Conversation.status == "closed")
                    transaction.condition_check(Visitor, site.site_id, visitor.visitor_id,
                                                condition=Visitor.conversation_id == conversation.conversation_id)
                conversation.refresh(consistent_read=True)
            else:
                conversation.update(actions=actions, condition=condition)
            return conversation
        except TransactWriteError as exc:
            if not conversations.cancelled_by_a_condition(exc):
                raise
        except UpdateError as exc:
            if not is_condition_failure(exc):
                raise
        visitor.refresh(consistent_read=True)
    raise conflict("conversation_changed", "the visitor's conversation keeps changing; retry")
