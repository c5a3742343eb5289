"""Canned responses: a site's saved replies, inserted in the console by typing ``/`` and a shortcut.

One small item per response in the ``canned`` table (site, shortcut); at most MAX_CANNED per site
of at most MAX_CANNED_TEXT characters each, so the whole list is one Query and fits one frame.
Any agent of the site lists, saves (creates or replaces by shortcut) and deletes them; a change is
pushed to the site's other agents as the new list.
"""
from __future__ import annotations

import re
from typing import Any, Dict, List, Optional

from pynamodb.exceptions import DeleteError

from chalicelib import clock, connections, sites
from chalicelib.errors import bad_request, conflict, forbidden, is_condition_failure, not_found
from chalicelib.models import CannedResponse
from chalicelib.tokens import Identity

MAX_CANNED = 50
MAX_CANNED_TEXT = 500
# Patterns are strings, compiled by re on first use and cached: a cold start that checks none pays nothing.
_SHORTCUT = r"^[^\s/]{1,32}$"


def _agents_only(identity: Identity) -> None:
    if not identity.is_agent:
        raise forbidden("agents_only", "only agents use canned responses")


def _shortcut(raw: Any) -> str:
    if not isinstance(raw, str) or not re.match(_SHORTCUT, raw.strip()):
        raise bad_request("invalid_shortcut", "a shortcut is 1-32 characters, no spaces or /")
    return raw.strip().lower()


def _all(site_id: str) -> List[CannedResponse]:
    return list(CannedResponse.query(site_id, limit=MAX_CANNED + 10, consistent_read=True))


def _frame(items: List[CannedResponse]) -> Dict[str, Any]:
    return {"type": "canned", "responses": [
        {"shortcut": c.shortcut, "text": c.text, "created_by": c.created_by, "created_at": c.created_at}
        for c in items]}


def list_for(identity: Identity) -> Dict[str, Any]:
    _agents_only(identity)
    return _frame(_all(identity.site_id))


def save(identity: Identity, shortcut: Any, text: Any, sender_connection: Optional[str] = None) -> Dict[str, Any]:
    _agents_only(identity)
    key = _shortcut(shortcut)
    if not isinstance(text, str) or not text.strip():
        raise bad_request("invalid_text", "a canned response needs text")
    if len(text) > MAX_CANNED_TEXT:
        raise bad_request("text_too_long", f"a canned response is at most {MAX_CANNED_TEXT} characters")
    existing = _all(identity.site_id)
    if key not in {c.shortcut for c in existing} and len(existing) >= MAX_CANNED:
        raise conflict("too_many_canned", f"a site has at most {MAX_CANNED} canned responses")
    CannedResponse(identity.site_id, key, text=text.strip(), created_by=identity.subject,
                   created_at=int(clock.now() * 1000)).save()
    return _changed(identity, sender_connection)


def delete(identity: Identity, shortcut: Any, sender_connection: Optional[str] = None) -> Dict[str, Any]:
    _agents_only(identity)
    key = _shortcut(shortcut)
    try:
        CannedResponse(identity.site_id, key).delete(condition=CannedResponse.shortcut.exists())
    except DeleteError as exc:
        if not is_condition_failure(exc):
            raise
        raise not_found("canned_not_found", "no canned response with that shortcut")
    return _changed(identity, sender_connection)


def _changed(identity: Identity, sender_connection: Optional[str]) -> Dict[str, Any]:
    frame = _frame(_all(identity.site_id))
    site = sites.get_site(identity.site_id)
    connections.push([c for c in connections.agent_connections(site) if c != sender_connection], frame)
    return frame
