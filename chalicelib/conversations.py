"""Conversations: access rules, assignment to agents, claim, transfer, close, listing."""
from __future__ import annotations

from typing import Any, Dict, List, Optional

from pynamodb.exceptions import DoesNotExist, UpdateError

from chalicelib import clock, connections, ids
from chalicelib.errors import KefuError, bad_request, conflict, forbidden, not_found
from chalicelib.models import Conversation, Site, Visitor, as_dict
from chalicelib.tokens import Identity

OPEN_STATUSES = ("queued", "assigned")


def public_view(conversation: Conversation) -> Dict[str, Any]:
    return {
        "conversation_id": conversation.conversation_id,
        "site_id": conversation.site_id,
        "visitor_id": conversation.visitor_id,
        "visitor_name": conversation.visitor_name,
        "visitor_attributes": as_dict(conversation.visitor_attributes),
        "visitor_verified": bool(conversation.visitor_verified),
        "visitor_online": bool(as_dict(conversation.visitor_conns)),
        "status": conversation.status,
        "agent_id": conversation.agent_id,
        "last_seq": int(conversation.last_seq or 0),
        "last_text": conversation.last_text,
        "visitor_read_seq": int(conversation.visitor_read_seq or 0),
        "agent_read_seq": int(conversation.agent_read_seq or 0),
        "current_page": as_dict(conversation.current_page) or None,
        "pages": list(conversation.pages or [])[-20:],
        "page_count": int(conversation.page_count or 0),
        "created_at": conversation.created_at,
        "updated_at": conversation.updated_at,
    }


def check_access(identity: Identity, conversation_id: Any) -> None:
    """What can be decided without a read: a visitor only ever touches their own conversation."""
    if not isinstance(conversation_id, str) or not conversation_id or len(conversation_id) > 64:
        raise bad_request("invalid_conversation_id", "conversation_id must be a string")
    if not identity.is_agent and conversation_id != identity.conversation_id:
        raise forbidden("not_in_conversation", "you are not in that conversation")


def load(identity: Identity, conversation_id: Any) -> Conversation:
    """Read a conversation the caller may see (visitor: their own; agent: their site's)."""
    check_access(identity, conversation_id)
    try:
        conversation = Conversation.get(conversation_id)
    except DoesNotExist:
        raise not_found("conversation_not_found", "no such conversation")
    if conversation.site_id != identity.site_id:
        # Same answer as a missing one: another site's ids are not to be probed.
        raise not_found("conversation_not_found", "no such conversation")
    return conversation


def open_for_visitor(site: Site, visitor: Visitor) -> Conversation:
    """The visitor's open conversation, or a new one (auto-assigned or queued)."""
    if visitor.conversation_id:
        try:
            existing = Conversation.get(visitor.conversation_id)
            if existing.status in OPEN_STATUSES:
                return existing
        except DoesNotExist:
            pass
    now = int(clock.now() * 1000)
    conversation = Conversation(
        ids.random_id("conv", 12),
        site_id=site.site_id,
        visitor_id=visitor.visitor_id,
        visitor_name=visitor.name,
        visitor_attributes=as_dict(visitor.attributes),
        visitor_verified=bool(visitor.verified),
        status="queued",
        created_at=now,
        updated_at=now,
    )
    conversation.save(condition=Conversation.conversation_id.does_not_exist())
    visitor.update(actions=[Visitor.conversation_id.set(conversation.conversation_id)])
    agent_id = least_loaded_agent(site)
    if agent_id is not None:
        _assign(site, conversation, agent_id, expect_status="queued")
    _announce(site, conversation, "created")
    return conversation


def least_loaded_agent(site: Site, exclude: Optional[str] = None) -> Optional[str]:
    online = [a for a in connections.online_agents(site) if a != exclude]
    if not online:
        return None
    load = as_dict(site.agent_load)
    return min(online, key=lambda agent_id: (int(load.get(agent_id, 0) or 0), agent_id))


def _load_delta(agent_id: str, delta: int) -> Any:
    counter = Site.agent_load[agent_id]
    return counter.set((counter | 0) + delta)


def _assign(site: Site, conversation: Conversation, agent_id: str, expect_status: str,
            expect_agent: Optional[str] = None) -> None:
    condition = Conversation.status == expect_status
    if expect_agent is not None:
        condition &= Conversation.agent_id == expect_agent
    try:
        conversation.update(
            actions=[
                Conversation.status.set("assigned"),
                Conversation.agent_id.set(agent_id),
                Conversation.updated_at.set(int(clock.now() * 1000)),
            ],
            condition=condition,
        )
    except UpdateError:
        raise conflict("conversation_changed", "the conversation changed; reload it")
    actions = [_load_delta(agent_id, 1)]
    if expect_agent:
        actions.append(_load_delta(expect_agent, -1))
    site.update(actions=actions)


def _announce(site: Site, conversation: Conversation, event: str, exclude: Optional[str] = None) -> None:
    """Tell the site's agents and the visitor; ``exclude`` is the caller, who gets the reply instead."""
    frame = {"type": "conversation", "event": event, "conversation": public_view(conversation)}
    targets = connections.agent_connections(site) + list(as_dict(conversation.visitor_conns))
    connections.push([t for t in targets if t != exclude], frame)


def claim(identity: Identity, conversation_id: Any, sender_connection: Optional[str] = None) -> Dict[str, Any]:
    conversation = _agent_load(identity, conversation_id)
    if conversation.status == "closed":
        raise conflict("conversation_closed", "the conversation is closed")
    if conversation.agent_id == identity.subject:
        return public_view(conversation)
    site = Site.get(identity.site_id)
    _assign(site, conversation, identity.subject, expect_status=conversation.status,
            expect_agent=conversation.agent_id)
    _announce(site, conversation, "assigned", exclude=sender_connection)
    return public_view(conversation)


def transfer(identity: Identity, conversation_id: Any, to_agent_id: Any,
             sender_connection: Optional[str] = None) -> Dict[str, Any]:
    if not isinstance(to_agent_id, str) or not to_agent_id:
        raise bad_request("invalid_agent_id", "agent_id must be a string")
    conversation = _agent_load(identity, conversation_id)
    if conversation.status == "closed":
        raise conflict("conversation_closed", "the conversation is closed")
    site = Site.get(identity.site_id)
    if to_agent_id not in connections.online_agents(site):
        raise conflict("agent_not_online", "that agent is not online")
    _assign(site, conversation, to_agent_id, expect_status=conversation.status,
            expect_agent=conversation.agent_id)
    _announce(site, conversation, "assigned", exclude=sender_connection)
    return public_view(conversation)


def close(identity: Identity, conversation_id: Any, sender_connection: Optional[str] = None) -> Dict[str, Any]:
    conversation = _agent_load(identity, conversation_id)
    if conversation.status == "closed":
        return public_view(conversation)
    previous_agent = conversation.agent_id
    try:
        conversation.update(
            actions=[Conversation.status.set("closed"),
                     Conversation.updated_at.set(int(clock.now() * 1000))],
            condition=Conversation.status == conversation.status,
        )
    except UpdateError:
        raise conflict("conversation_changed", "the conversation changed; reload it")
    site = Site.get(identity.site_id)
    if previous_agent:
        site.update(actions=[_load_delta(previous_agent, -1)])
    _announce(site, conversation, "closed", exclude=sender_connection)
    return public_view(conversation)


def requeue(site: Site, conversation: Conversation) -> bool:
    """Take an assigned conversation back from its (gone) agent; False if it changed meanwhile."""
    agent_id = conversation.agent_id
    try:
        conversation.update(
            actions=[Conversation.status.set("queued"), Conversation.agent_id.remove(),
                     Conversation.updated_at.set(int(clock.now() * 1000))],
            condition=(Conversation.status == "assigned") & (Conversation.agent_id == agent_id),
        )
    except UpdateError:
        return False
    site.update(actions=[_load_delta(agent_id, -1)])
    if not assign_if_possible(site, conversation, exclude_agent=agent_id):
        _announce(site, conversation, "queued")
    return True


def assign_if_possible(site: Site, conversation: Conversation, exclude_agent: Optional[str] = None,
                       connecting: Optional[str] = None) -> bool:
    """A queued conversation goes to the least-loaded online agent, if any is online.

    ``connecting`` is an agent connection still inside $connect: API Gateway answers 410 for
    posts to it until $connect returns, so it is not told (it asks for `state` once open).
    """
    agent_id = least_loaded_agent(site, exclude=exclude_agent)
    if agent_id is None:
        return False
    try:
        _assign(site, conversation, agent_id, expect_status="queued")
    except KefuError:
        return False
    _announce(site, conversation, "assigned", exclude=connecting)
    return True


def assign_queued(site: Site, connecting: Optional[str] = None) -> int:
    """Give queued conversations to online agents (an agent just came online)."""
    assigned = 0
    for conversation in list_open(site.site_id):
        if conversation.status == "queued":
            if not connections.online_agents(site):
                break
            assigned += assign_if_possible(site, conversation, connecting=connecting)
    return assigned


def list_open(site_id: str, limit: int = 200) -> List[Conversation]:
    """A site's open conversations, most recent first (one Query on the site index)."""
    return list(
        Conversation.site_updated_index.query(
            site_id,
            filter_condition=Conversation.status.is_in(*OPEN_STATUSES),
            scan_index_forward=False,
            limit=limit,
        )
    )


def list_for_agent(identity: Identity, include_closed: bool = False, limit: int = 100) -> List[Dict[str, Any]]:
    if not identity.is_agent:
        raise forbidden("agents_only", "only agents list conversations")
    if include_closed:
        found = Conversation.site_updated_index.query(identity.site_id, scan_index_forward=False, limit=limit)
    else:
        found = list_open(identity.site_id, limit=limit)
    return [public_view(c) for c in found]


def _agent_load(identity: Identity, conversation_id: Any) -> Conversation:
    if not identity.is_agent:
        raise forbidden("agents_only", "only agents can do that")
    return load(identity, conversation_id)
