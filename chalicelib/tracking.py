"""Visitor tracking: the page a visitor is on, shown live to the site's agents.

Pages are kept on the visitor item (current page, a count, the last few pages), never on the
conversation, which every message rewrites.
"""
from __future__ import annotations

from typing import Any, Dict, List

from pynamodb.exceptions import DoesNotExist, UpdateError
from pynamodb.expressions.condition import size

from chalicelib import clock, connections, sites, visitors
from chalicelib.errors import bad_request, conflict, forbidden, is_condition_failure, not_found
from chalicelib.models import Visitor, as_dict
from chalicelib.tokens import Identity

PAGES_KEPT = 10
_LIMITS = {"url": 2048, "title": 300, "referrer": 2048}
# What a page keeps in the visitor's history (the current page keeps everything).
_KEPT_IN_HISTORY = {"url": 512, "title": 120}


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
    visitor = _record(identity, page)
    frame = {"type": "page_view", "conversation_id": identity.conversation_id,
             "visitor_id": identity.subject, "page": page}
    site = sites.cached_site(identity.site_id)
    connections.push(connections.agent_connections(site), frame)
    visitors.announce_move(site, visitor)
    return frame


def _record(identity: Identity, page: Dict[str, Any]) -> Visitor:
    """Store the page on the visitor item; returns the item as updated."""
    visitor = Visitor(identity.site_id, identity.subject)
    kept = {k: v[:_KEPT_IN_HISTORY[k]] for k, v in page.items() if k in _KEPT_IN_HISTORY}
    kept["at"] = page["at"]
    now = clock.now()
    base = [Visitor.current_page.set(page), Visitor.page_count.add(1), Visitor.last_seen_at.set(int(now))]
    this_visit = [Visitor.visit_pages.add(1)]
    if page.get("referrer"):  # the visit's first page's referrer is where the visit came from
        this_visit.append(Visitor.visit_referrer.set(Visitor.visit_referrer | page["referrer"][:_KEPT_IN_HISTORY["url"]]))
    visit_goes_on = Visitor.visit_started_at.exists() & (Visitor.last_seen_at >= int(now - visitors.VISIT_GAP_SECONDS))
    exists = Visitor.visitor_id.exists()
    try:  # the usual case: room left in the history, within a visit
        visitor.update(actions=base + this_visit + [Visitor.pages.set(Visitor.pages.append([kept]))],
                       condition=exists & (size(Visitor.pages) < PAGES_KEPT) & visit_goes_on)
        return visitor
    except UpdateError as exc:
        if not is_condition_failure(exc):
            raise
    for _ in range(3):  # full, or a new visit: guarded by the count so concurrent views both land
        try:
            visitor.refresh(consistent_read=True)
        except DoesNotExist:
            raise not_found("visitor_not_found", "no such visitor")
        history: List[Dict[str, Any]] = [as_dict(p) for p in (visitor.pages or [])]
        visit = this_visit
        if visitors.visit_is_over(visitor, now):
            referrer = page.get("referrer")
            visit = visitors.new_visit_actions(now, first=visitor.visits is None, pages=1,
                                               referrer=referrer[:_KEPT_IN_HISTORY["url"]] if referrer else None)
        try:
            visitor.update(actions=base + visit + [Visitor.pages.set((history + [kept])[-PAGES_KEPT:])],
                           condition=Visitor.page_count == (visitor.page_count or 0))
            return visitor
        except UpdateError as exc:
            if not is_condition_failure(exc):
                raise
    raise conflict("page_view_conflict", "too many page views at once; retry")
