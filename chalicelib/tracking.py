"""Visitor tracking: the page a visitor is on, shown live to the site's agents."""
from __future__ import annotations

from typing import Any, Dict

from pynamodb.exceptions import UpdateError
from pynamodb.expressions.condition import size

from chalicelib import clock, connections
from chalicelib.errors import bad_request, forbidden, not_found
from chalicelib.models import Conversation, Site
from chalicelib.tokens import Identity

MAX_PAGES_KEPT = 50
_LIMITS = {"url": 2048, "title": 300, "referrer": 2048}


def page_view(identity: Identity, payload: Dict[str, Any]) -> Dict[str, Any]:
    if identity.is_agent:
        raise forbidden("visitors_only", "only visitors report page views")
    page: Dict[str, Any] = {}
    for field, limit in _LIMITS.items():
        value = payload.get(field)
        if value is None and field != "url":
            continue
        if not isinstance(value, str) or not value or len(value) > limit:
            raise bad_request(f"invalid_{field}", f"{field} must be a string of at most {limit} characters")
        page[field] = value
    page["at"] = int(clock.now() * 1000)
    conversation = Conversation(identity.conversation_id)
    base = [Conversation.current_page.set(page), Conversation.page_count.add(1)]
    owned = Conversation.conversation_id.exists() & (Conversation.visitor_id == identity.subject)
    try:
        conversation.update(
            actions=base + [Conversation.pages.set(Conversation.pages.append([page]))],
            condition=owned & (size(Conversation.pages) < MAX_PAGES_KEPT),
        )
    except UpdateError:
        try:  # the history is full (or new): keep only the current page and count it
            conversation.update(actions=base + [Conversation.pages.set([page])], condition=owned)
        except UpdateError:
            raise not_found("conversation_not_found", "no such conversation")
    frame = {"type": "page_view", "conversation_id": identity.conversation_id,
             "visitor_id": identity.subject, "page": page}
    connections.push(connections.agent_connections(Site.get(identity.site_id)), frame)
    return frame
