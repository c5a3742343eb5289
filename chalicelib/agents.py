"""Agents' standing: a token is only as good as the agent it names, now.

An agent token names the agent (site, email, id) and the token version it was issued under.
Changing the password or disabling the agent bumps the version, so every earlier token is refused
at `$connect` and on REST, and disabling closes the agent's live sockets at once. A warm function
remembers an agent's standing for at most ``CHECK_CACHE_SECONDS``, except at `$connect`, which
reads it every time: the sockets a disable closes reconnect at once, to other warm containers
than the one that disabled the agent (one GetItem per agent connect, a rare event).
"""
from __future__ import annotations

import time
from typing import Dict, Tuple

from pynamodb.exceptions import DoesNotExist

from chalicelib import connections, delivery, sites
from chalicelib.errors import bad_request, not_found, unauthorized
from chalicelib.models import Agent, as_dict
from chalicelib.passwords import hash_password
from chalicelib.tokens import Identity

CHECK_CACHE_SECONDS = 60

# (site, email) -> (checked at, monotonic; agent id; token version; disabled)
_standing: Dict[Tuple[str, str], Tuple[float, str, int, bool]] = {}


def forget_cache() -> None:
    _standing.clear()


def check_current(identity: Identity, fresh: bool = False) -> None:
    """Raise 401 unless the token's agent exists, is enabled and still on that token version.
    ``fresh``: read the agent now, whatever this function remembers."""
    version = identity.version
    if not isinstance(identity.email, str) or not isinstance(version, int) or isinstance(version, bool):
        raise unauthorized("token_revoked", "this token is no longer valid; log in again")
    key = (identity.site_id, identity.email)
    known = _standing.get(key)
    if fresh or known is None or time.monotonic() - known[0] > CHECK_CACHE_SECONDS:
        try:
            agent = Agent.get(identity.site_id, identity.email)
            known = (time.monotonic(), agent.agent_id, int(agent.token_version or 0), bool(agent.disabled))
        except DoesNotExist:
            known = (time.monotonic(), "", -1, True)
        _standing[key] = known
    _, agent_id, version, disabled = known
    if agent_id != identity.subject or version != identity.version:
        raise unauthorized("token_revoked", "this token is no longer valid; log in again")
    if disabled:
        raise unauthorized("agent_disabled", "this agent is disabled")


def forget(agent: Agent) -> None:
    """Drop what this function remembers of the agent's standing (it changed)."""
    _standing.pop((agent.site_id, agent.email), None)


def _get(site_id: str, email: str) -> Agent:
    try:
        return Agent.get(site_id, email.strip().lower())
    except DoesNotExist:
        raise not_found("agent_not_found", "no such agent")


def set_password(site_id: str, email: str, password: str) -> Agent:
    """A new password; every token issued before it stops working, live sockets are closed."""
    if len(password) < 8:
        raise bad_request("weak_password", "passwords need at least 8 characters")
    agent = _get(site_id, email)
    agent.update(actions=[Agent.password_hash.set(hash_password(password)), Agent.token_version.add(1)])
    _standing.pop((agent.site_id, agent.email), None)
    close_sockets(agent)
    return agent


def disable(site_id: str, email: str) -> Agent:
    agent = _get(site_id, email)
    agent.update(actions=[Agent.disabled.set(True), Agent.token_version.add(1)])
    _standing.pop((agent.site_id, agent.email), None)
    close_sockets(agent)
    return agent


def close_sockets(agent: Agent) -> int:
    """Close the agent's live connections through the Management API, and forget them."""
    site = sites.get_site(agent.site_id)
    theirs = [c for c, a in as_dict(site.agent_conns).items() if a == agent.agent_id]
    for connection_id in theirs:
        delivery.close(connection_id)
        connections.drop(connection_id)
    return len(theirs)

