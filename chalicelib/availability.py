"""Agents' availability: an online agent is ``online`` (takes new conversations) or ``away``
(keeps their conversations, gets no new ones). Kept on the site item beside the roster
(``agent_away``), which every assignment reads anyway, so skipping away agents costs no read.
The agents' list (``agents``: names for transfer and for messages) is a Query of the site's
agents, made by ``state`` only.
"""
from __future__ import annotations

from typing import Any, Dict, List, Optional, Set

from pynamodb.exceptions import UpdateError

from chalicelib import clock, connections, sites
from chalicelib.errors import bad_request, forbidden, is_condition_failure
from chalicelib.models import Agent, Site, as_dict
from chalicelib.tokens import Identity

STATUSES = ("online", "away")


def away_agents(site: Site) -> Set[str]:
    return set(as_dict(getattr(site, "agent_away", None)))


def availability_of(site: Site, agent_id: str) -> str:
    return "away" if agent_id in away_agents(site) else "online"


def set_status(identity: Identity, status: Any, connection_id: Optional[str] = None) -> Dict[str, Any]:
    """The ``status`` action: the agent sets themselves online or away; the site's other agents get a
    presence frame with ``availability``. Back online, they are handed queued conversations."""
    if not identity.is_agent:
        raise forbidden("agents_only", "only agents set a status")
    if status not in STATUSES:
        raise bad_request("invalid_status", "status must be online or away")
    site = sites.get_site(identity.site_id)
    _write(site, identity.subject, status == "away")
    sites.remember_site(site)
    others = [c for c in connections.agent_connections(site) if c != connection_id]
    frame = {"type": "presence", "role": "agent", "id": identity.subject,
             "status": "online" if identity.subject in connections.online_agents(site) else "offline",
             "availability": status}
    connections.push(others, frame)
    if status == "online":
        from chalicelib import conversations  # conversations imports this module

        conversations.assign_queued(site)
    return {"type": "status", "status": status}


def _write(site: Site, agent_id: str, away: bool) -> None:
    """Set or clear the agent's entry (a site item from before this field has no map to write into:
    it gets one)."""
    now = int(clock.now() * 1000)
    try:
        if away:
            site.update(actions=[Site.agent_away[agent_id].set(now)], condition=Site.agent_away.exists())
        else:
            site.update(actions=[Site.agent_away[agent_id].remove()], condition=Site.agent_away.exists())
    except UpdateError as exc:
        if not is_condition_failure(exc):
            raise
        if away:
            site.update(actions=[Site.agent_away.set({agent_id: now})], condition=Site.agent_away.does_not_exist())
        else:
            site.refresh()


def agents_of(site: Site) -> List[Dict[str, Any]]:
    """The site's agents with their names, whether online, and their availability (for ``state``)."""
    online = set(connections.online_agents(site))
    away = away_agents(site)
    return [{"agent_id": a.agent_id, "name": a.name, "online": a.agent_id in online,
             "availability": "away" if a.agent_id in away else "online"}
            for a in Agent.query(site.site_id) if not a.disabled]
