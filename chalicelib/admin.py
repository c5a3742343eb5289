"""The site owner's REST API (/v1/admin/...): settings, agents, the identity secret, the snippet.

Every route acts on the caller's own site (the token's), so another site's owner can only ever
reach their own: an agent id of another site is ``agent_not_found``. The caller's standing is read
fresh from the agents table on every admin request (no cache): a demoted or disabled owner loses
access at once. Agent tokens and visitor tokens get 403 ``owner_only``.
"""
from __future__ import annotations

import secrets
from typing import Any, Dict, List, Optional
from urllib.parse import urlsplit

from pynamodb.exceptions import DoesNotExist

from chalicelib import agents, http, site_settings, sites
from chalicelib.errors import bad_request, conflict, forbidden, not_found, unauthorized
from chalicelib.models import Agent, Site, as_dict
from chalicelib.tokens import SITE_ROLES, Identity

SITE_FIELDS = ("name", "allowed_origins", "default_language", "upload", "widget")
AGENT_FIELDS = ("email", "name", "password", "role", "avatar_url")
AGENT_CHANGES = ("name", "password", "role", "disabled", "avatar_url")


def require_owner(identity: Identity) -> Agent:
    """The caller's agent item, if they are an enabled owner of their site, still on this token."""
    if not identity.is_agent:
        raise forbidden("owner_only", "only the site's owners can do that")
    try:
        agent = Agent.get(identity.site_id, identity.email or "", consistent_read=True)
    except DoesNotExist:
        raise unauthorized("token_revoked", "this token is no longer valid; log in again")
    if agent.agent_id != identity.subject or int(agent.token_version or 0) != identity.version:
        raise unauthorized("token_revoked", "this token is no longer valid; log in again")
    if agent.disabled:
        raise unauthorized("agent_disabled", "this agent is disabled")
    if (agent.role or "agent") != "owner":
        raise forbidden("owner_only", "only the site's owners can do that")
    return agent


def _fields(body: Dict[str, Any], allowed: tuple) -> Dict[str, Any]:
    unknown = sorted(set(body) - set(allowed))
    if unknown:
        raise bad_request("unknown_field", f"unknown field {unknown[0]!r}; known: {', '.join(allowed)}")
    return body


# --- the site ----------------------------------------------------------------------------------

def site_view(site: Site) -> Dict[str, Any]:
    current = site_settings.stored(site)
    return {
        "site_id": site.site_id,
        "name": site.name,
        "allowed_origins": list(site.allowed_origins or []),
        "default_language": current["default_language"],
        "upload": sites.upload_policy(site),
        "widget": current["widget"],
        "created_at": site.created_at,
    }


def get_site(identity: Identity) -> Dict[str, Any]:
    require_owner(identity)
    return site_view(sites.get_site(identity.site_id))


def update_site(identity: Identity, body: Dict[str, Any]) -> Dict[str, Any]:
    """Change any of the site's fields; every field is checked before anything is written."""
    require_owner(identity)
    _fields(body, SITE_FIELDS)
    site = sites.get_site(identity.site_id)
    actions: List[Any] = []
    if "name" in body:
        name = body["name"]
        if not isinstance(name, str) or not name.strip() or len(name) > 100:
            raise bad_request("invalid_name", "name: 1-100 characters")
        actions.append(Site.name.set(name.strip()))
    if "allowed_origins" in body:
        actions.append(Site.allowed_origins.set(site_settings.origins(body["allowed_origins"])))
    if "upload" in body:
        upload = body["upload"]
        if not isinstance(upload, dict):
            raise bad_request("invalid_upload", "upload must be an object")
        _fields(upload, ("allowed_types", "max_bytes"))
        if "allowed_types" in upload:
            actions.append(Site.upload_types.set(site_settings.upload_types(upload["allowed_types"])))
        if "max_bytes" in upload:
            actions.append(Site.upload_max_bytes.set(site_settings.upload_max_bytes(upload["max_bytes"])))
    if "default_language" in body or "widget" in body:
        changes = {k: body[k] for k in ("default_language", "widget") if k in body}
        actions.append(Site.settings.set(site_settings.merged(site_settings.stored(site), changes)))
    if actions:
        site.update(actions=actions)
    return site_view(site)


def reveal_secret(identity: Identity) -> Dict[str, Any]:
    """The identity-verification secret, for the owner to put on their own server."""
    require_owner(identity)
    return {"secret": sites.get_site(identity.site_id).secret}


def rotate_secret(identity: Identity) -> Dict[str, Any]:
    require_owner(identity)
    return {"secret": sites.rotate_secret(identity.site_id)}


def snippet(identity: Identity, script_url: Optional[str]) -> Dict[str, Any]:
    require_owner(identity)
    parts = urlsplit(script_url or "")
    if parts.scheme not in ("http", "https") or not parts.hostname or len(script_url or "") > 500:
        raise bad_request("invalid_script_url", "script_url must be the http(s) URL widget.js is served from")
    return {"snippet": sites.embed_snippet(identity.site_id, script_url)}


# --- agents ------------------------------------------------------------------------------------

def agent_view(agent: Agent, online: set) -> Dict[str, Any]:
    return {
        "agent_id": agent.agent_id,
        "email": agent.email,
        "name": agent.name,
        "role": agent.role or "agent",
        "disabled": bool(agent.disabled),
        "avatar_url": agent.avatar_url or "",
        "online": agent.agent_id in online,
        "created_at": agent.created_at,
    }


def _online(site_id: str) -> set:
    return set(as_dict(sites.get_site(site_id).agent_conns).values())


def list_agents(identity: Identity) -> Dict[str, Any]:
    require_owner(identity)
    online = _online(identity.site_id)
    return {"agents": [agent_view(a, online) for a in Agent.query(identity.site_id)]}


def _role(value: Any) -> str:
    if value not in SITE_ROLES:
        raise bad_request("invalid_role", f"role must be one of {', '.join(SITE_ROLES)}")
    return value


def _avatar(value: Any) -> Optional[str]:
    return site_settings.https_url(value, "avatar_url") or None


def create_agent(identity: Identity, body: Dict[str, Any]) -> Dict[str, Any]:
    """A new agent. Without a password one is made up and returned once, for the owner to pass on."""
    require_owner(identity)
    _fields(body, AGENT_FIELDS)
    name = body.get("name")
    if not isinstance(name, str) or not name.strip() or len(name) > 100:
        raise bad_request("invalid_name", "name: 1-100 characters")
    if not isinstance(body.get("email"), str) or len(body["email"]) > 320:
        raise bad_request("invalid_email", "not an email address")
    password = body.get("password")
    made_up = password is None
    if made_up:
        password = secrets.token_urlsafe(12)
    else:
        _check_password(password)
    role = _role(body.get("role", "agent"))
    avatar = _avatar(body["avatar_url"]) if "avatar_url" in body else None
    agent = sites.create_agent(identity.site_id, body["email"], password, name.strip(), role=role, avatar_url=avatar)
    view = agent_view(agent, set())
    if made_up:
        view["password"] = password
    return view


def _check_password(password: Any) -> None:
    if not isinstance(password, str) or len(password) > 200:
        raise bad_request("invalid_password", "a password is text of 8 to 200 characters")
    if len(password) < 8:
        raise bad_request("weak_password", "passwords need at least 8 characters")


def _by_id(site_id: str, agent_id: Any) -> Agent:
    if not isinstance(agent_id, str) or not agent_id or len(agent_id) > 64:
        raise not_found("agent_not_found", "no such agent")
    for agent in Agent.query(site_id):  # a site's agents: one small partition
        if agent.agent_id == agent_id:
            return agent
    raise not_found("agent_not_found", "no such agent")


def _other_owners(site_id: str, agent_id: str) -> int:
    return sum(1 for a in Agent.query(site_id, consistent_read=True)
               if a.agent_id != agent_id and (a.role or "agent") == "owner" and not a.disabled)


def update_agent(identity: Identity, agent_id: str, body: Dict[str, Any]) -> Dict[str, Any]:
    """Rename, re-role, disable or enable an agent, set their avatar or a new password. A site
    always keeps an enabled owner: the last one cannot be demoted or disabled (409 last_owner)."""
    require_owner(identity)
    _fields(body, AGENT_CHANGES)
    agent = _by_id(identity.site_id, agent_id)
    actions: List[Any] = []
    if "name" in body:
        if not isinstance(body["name"], str) or not body["name"].strip() or len(body["name"]) > 100:
            raise bad_request("invalid_name", "name: 1-100 characters")
        actions.append(Agent.name.set(body["name"].strip()))
    if "avatar_url" in body:
        avatar = _avatar(body["avatar_url"])
        actions.append(Agent.avatar_url.set(avatar) if avatar else Agent.avatar_url.remove())
    role = _role(body["role"]) if "role" in body else None
    disabled = body.get("disabled")
    if "disabled" in body and not isinstance(disabled, bool):
        raise bad_request("invalid_disabled", "disabled must be true or false")
    password = body.get("password")
    if "password" in body:
        _check_password(password)
    losing_owner = (agent.role or "agent") == "owner" and (role == "agent" or disabled is True)
    if losing_owner and _other_owners(identity.site_id, agent.agent_id) == 0:
        raise conflict("last_owner", "a site keeps at least one enabled owner")
    if role is not None:
        actions.append(Agent.role.set(role))
    if disabled is False and agent.disabled:
        actions.append(Agent.disabled.set(False))
    if actions:
        agent.update(actions=actions)
        agents.forget(agent)
    if disabled is True and not agent.disabled:
        agent = agents.disable(identity.site_id, agent.email)
    if password is not None:
        agent = agents.set_password(identity.site_id, agent.email, password)
    return agent_view(agent, _online(identity.site_id))


# --- REST adapters: app.py routes /v1/admin/... here -------------------------------------------

def rest_get_site(request: Any) -> Dict[str, Any]:
    return get_site(http.caller(request))


def rest_update_site(request: Any) -> Dict[str, Any]:
    return update_site(http.caller(request), http.json_body(request))


def rest_reveal_secret(request: Any) -> Dict[str, Any]:
    return reveal_secret(http.caller(request))


def rest_rotate_secret(request: Any) -> Dict[str, Any]:
    return rotate_secret(http.caller(request))


def rest_snippet(request: Any) -> Dict[str, Any]:
    return snippet(http.caller(request), (request.query_params or {}).get("script_url"))


def rest_list_agents(request: Any) -> Dict[str, Any]:
    return list_agents(http.caller(request))


def rest_create_agent(request: Any) -> Dict[str, Any]:
    return create_agent(http.caller(request), http.json_body(request))


def rest_update_agent(request: Any, agent_id: str) -> Dict[str, Any]:
    return update_agent(http.caller(request), agent_id, http.json_body(request))
