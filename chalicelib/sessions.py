"""Starting a session: a visitor arriving on a site's page, an agent logging in."""
from __future__ import annotations

import json
import re
from typing import Any, Dict, Optional

from pynamodb.exceptions import DoesNotExist, PutError

from chalicelib import clock, connections, contact, conversations, jsonio, limits, site_settings, tokens, verification, visitors
from chalicelib.config import settings
from chalicelib.errors import KefuError, bad_request, is_condition_failure, too_large, unauthorized
from chalicelib.models import Agent, Visitor
from chalicelib.passwords import dummy_hash, verify_password
from chalicelib.sites import check_identity_hash, check_origin, get_site, upload_policy

# The shape of an anonymous visitor id; only those this server signed are honoured (verification.py).
# Patterns are strings, compiled by re on first use and cached: a cold start that checks none pays nothing.
_ANONYMOUS_ID = r"^v_[A-Za-z0-9]{20,60}$"
_USER_ID = r"^[\x21-\x7e]{1,128}$"


def _optional_str(body: Dict[str, Any], name: str, limit: int) -> Optional[str]:
    value = body.get(name)
    if value is None:
        return None
    if not isinstance(value, str) or len(value) > limit:
        raise bad_request(f"invalid_{name}", f"{name} must be a string of at most {limit} characters")
    return value


def _attributes(body: Dict[str, Any]) -> Dict[str, Any]:
    value = body.get("attributes")
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise bad_request("invalid_attributes", "attributes must be an object")
    if not jsonio.is_storable(value):
        raise bad_request("invalid_attributes", "attributes: named fields, finite numbers, at most 16 levels deep")
    if len(json.dumps(value, ensure_ascii=False).encode()) > settings().max_attributes_bytes:
        raise too_large("attributes_too_large", f"attributes are limited to {settings().max_attributes_bytes} bytes of JSON")
    return value


def visitor_session(body: Dict[str, Any], origin: Optional[str], source_ip: Optional[str] = None) -> Dict[str, Any]:
    cfg = settings()
    limits.hit(f"session:{source_ip or 'unknown'}", cfg.session_limit, cfg.session_window, "sessions from one address")
    site = get_site(body.get("site_id"))
    check_origin(site, origin)
    name = _optional_str(body, "name", 100)
    attributes = _attributes(body)
    user_id = _optional_str(body, "user_id", 128)
    claimed_visitor = _optional_str(body, "visitor_id", 64)
    identity_token = body.get("identity_token")
    if body.get("resume_token") is not None and identity_token is None and user_id is None:
        # the link in an email that brings a visitor who had left back into their chat
        visitor_id, verified = contact.visitor_from_resume(site.site_id, body["resume_token"]), False
    elif identity_token is not None:
        user_id, claimed_name = verification.from_identity_token(site, identity_token)
        name = name if name is not None else claimed_name
        visitor_id, verified = f"u_{user_id}", True
    elif user_id is not None:
        if not re.match(_USER_ID, user_id):
            raise bad_request("invalid_user_id", "user_id: 1-128 printable characters")
        check_identity_hash(site, user_id, body.get("user_hash"))
        visitor_id, verified = f"u_{user_id}", True
    elif claimed_visitor is not None and verification.is_issued_visitor_id(claimed_visitor):
        visitor_id, verified = claimed_visitor, False
    elif claimed_visitor is not None and not re.match(_ANONYMOUS_ID, claimed_visitor):
        raise bad_request("invalid_visitor_id", "visitor_id must be one this server issued")
    else:  # none yet, or one this server did not sign (made up, or from before ids were signed)
        visitor_id, verified = verification.new_visitor_id(), False

    now = int(clock.now())
    try:
        visitor: Optional[Visitor] = Visitor.get(site.site_id, visitor_id)
    except DoesNotExist:
        visitor = None
    created = _new_visitor(site.site_id, visitor_id, name, attributes, verified, now) if visitor is None else None
    if created is not None:  # its conversation id is reserved in the same write
        visitor, conversation = created, conversations.virtual(created, created.conversation_id)
    else:
        if visitor is None:  # a concurrent first session wrote it
            visitor = Visitor.get(site.site_id, visitor_id, consistent_read=True)
        actions = [Visitor.last_seen_at.set(now)]
        if visitors.visit_is_over(visitor, now):
            actions += visitors.new_visit_actions(now, first=visitor.visits is None)
        if name is not None:
            actions.append(Visitor.name.set(name))
        if body.get("attributes") is not None:
            actions.append(Visitor.attributes.set(attributes))
        visitor.update(actions=actions)
        conversation = conversations.open_for_visitor(visitor)
    identity = tokens.Identity("visitor", site.site_id, visitor_id, conversation.conversation_id)
    token, expires_at = tokens.issue(identity, settings().visitor_token_ttl)
    return {
        "token": token,
        "visitor_id": visitor_id,
        "conversation_id": conversation.conversation_id,
        "expires_at": expires_at,
        "site_name": site.name,
        "agents_online": len(connections.online_agents(site)),
        "last_seq": int(conversation.last_seq or 0),
        "websocket_url": settings().public_websocket_url,
        "upload": upload_policy(site),
        "widget": site_settings.for_widget(site),
        "agents": agent_profiles(site.site_id),
        "contact": {"name": visitor.name, "email": visitor.email, "phone": visitor.phone},
    }


def _new_visitor(site_id: str, visitor_id: str, name: Optional[str], attributes: Dict[str, Any], verified: bool,
                 now: int) -> Optional[Visitor]:
    """A first-time visitor's item, written with a reserved conversation id (no conversation item:
    conversations.py); None if it exists meanwhile (concurrent first sessions: one write wins)."""
    visitor = Visitor(site_id, visitor_id, name=name, attributes=attributes, verified=verified, created_at=now,
                      last_seen_at=now, visit_started_at=now * 1000, visit_pages=0, visits=1,
                      conversation_id=conversations.new_id(), live_conns={})
    try:
        visitor.save(condition=Visitor.visitor_id.does_not_exist())
    except PutError as exc:
        if not is_condition_failure(exc):
            raise
        return None
    return visitor


def agent_profiles(site_id: str) -> Dict[str, Dict[str, Any]]:
    """What visitors see of the site's agents beside their messages: names and avatars, by agent
    id (one Query of the site's agents, at session time, never per message)."""
    return {a.agent_id: {"name": a.name, "avatar_url": a.avatar_url or ""}
            for a in Agent.query(site_id) if not a.disabled}


def agent_session(body: Dict[str, Any], source_ip: Optional[str] = None) -> Dict[str, Any]:
    """An agent logs in. An unknown site, an unknown email and a wrong password get the same 401;
    failures back off per account, and attempts are limited per address (429 too_many_attempts)."""
    site_id, email, password = body.get("site_id"), body.get("email"), body.get("password")
    if not all(isinstance(v, str) and v for v in (site_id, email, password)) or len(email) > 320:
        raise bad_request("missing_credentials", "site_id, email and password are required")
    email = email.strip().lower()
    cfg = settings()
    try:
        limits.hit(f"login:{source_ip or 'unknown'}", cfg.login_ip_limit, cfg.login_ip_window, "logins from one address")
    except KefuError as exc:
        raise KefuError("too_many_attempts", exc.message, 429)
    limits.login_allowed(site_id, email)
    try:
        site = get_site(site_id)
        agent = Agent.get(site.site_id, email)
        valid = verify_password(password, agent.password_hash) and not agent.disabled
    except (KefuError, DoesNotExist):
        verify_password(password, dummy_hash())  # the same time as a wrong password
        valid = False
    if not valid:
        limits.login_failed(site_id, email)
        raise unauthorized("invalid_credentials", "wrong site, email or password")
    limits.login_succeeded(site_id, email)
    identity = tokens.Identity("agent", site.site_id, agent.agent_id, email=agent.email,
                               version=int(agent.token_version or 0), site_role=agent.role or "agent")
    token, expires_at = tokens.issue(identity, settings().agent_token_ttl)
    return {"token": token, "agent_id": agent.agent_id, "expires_at": expires_at,
            "name": agent.name, "role": agent.role or "agent", "site_id": site.site_id, "site_name": site.name,
            "websocket_url": settings().public_websocket_url, "upload": upload_policy(site)}
