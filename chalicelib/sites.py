"""Sites (tenants) and their agents: creation, secrets, identity verification, origins."""
from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import threading
import time
from collections import OrderedDict
from typing import List, Optional, Tuple

from pynamodb.exceptions import PutError

from chalicelib import clock, ids
from chalicelib.config import settings
from chalicelib.errors import is_condition_failure
from chalicelib.errors import bad_request, conflict, forbidden, not_found
from chalicelib.models import Agent, Site
from chalicelib.passwords import hash_password

# Patterns are strings, compiled by re on first use and cached: a cold start that checks none pays nothing.
_EMAIL = r"^[^@\s]{1,64}@[^@\s]{1,255}$"


def get_site(site_id: str) -> Site:
    if not isinstance(site_id, str) or not site_id or len(site_id) > 64:
        raise bad_request("invalid_site_id", "site_id must be a non-empty string")
    try:
        return Site.get(site_id)
    except Site.DoesNotExist:
        raise not_found("site_not_found", "no such site")


# Sites read recently by this warm function: site id -> (read at, item). See cached_site.
_recent: "OrderedDict[str, Tuple[float, Site]]" = OrderedDict()
_RECENT_MAX = 10_000
_recent_lock = threading.Lock()  # the local gateway runs invocations on threads of one process


def cached_site(site_id: str) -> Site:
    """The site, for paths that only need its agents' roster: read at most once per
    ``KEFU_SITE_CACHE_SECONDS`` per warm function. At a busy site every frame read the same item,
    the hottest key of all (docs/scale.md); now each function instance reads it once a second.

    A roster at most that old is safe: an agent's $connect answers only once every copy read
    before it joined has expired (``hold_until_roster_settles``), and a post to a connection that
    has left answers 410, which forgets it. The read stays eventually consistent, as before.
    """
    ttl = settings().site_cache_seconds
    if ttl <= 0:
        return Site.get(site_id)
    now = clock.now()
    known = _recent.get(site_id)
    if known is not None and now - known[0] < ttl:
        return known[1]
    site = Site.get(site_id)
    remember_site(site, now)
    return site


def remember_site(site: Site, read_at: Optional[float] = None) -> None:
    """Keep an item this function just read or wrote (a roster change made here is seen at once)."""
    if settings().site_cache_seconds <= 0:
        return
    with _recent_lock:
        _recent[site.site_id] = (clock.now() if read_at is None else read_at, site)
        _recent.move_to_end(site.site_id)
        while len(_recent) > _RECENT_MAX:
            _recent.popitem(last=False)


def forget_cached_sites() -> None:
    _recent.clear()


def hold_until_roster_settles(joined_at: float) -> None:
    """An agent connection joined the roster at ``joined_at``: wait until no function can still be
    using a copy read before that. API Gateway delivers nothing to a connection inside $connect,
    and the console reads its state once open, so from then on every push reaches it."""
    wait = joined_at + settings().site_cache_seconds - clock.now()
    if wait > 0:
        time.sleep(wait)


# "pending" names the uploads' holding folder (chalicelib/uploads.py): never a site's own.
RESERVED_SITE_IDS = {"pending"}


def create_site(name: str, allowed_origins: List[str], site_id: Optional[str] = None) -> Site:
    if site_id in RESERVED_SITE_IDS:
        raise bad_request("invalid_site_id", f"{site_id!r} is reserved")
    site = Site(
        site_id or ids.random_id("site", 9),
        name=name,
        allowed_origins=[o.rstrip("/") for o in allowed_origins],
        secret=secrets.token_hex(32),
        created_at=int(clock.now()),
    )
    try:
        site.save(condition=Site.site_id.does_not_exist())
    except PutError as exc:
        if is_condition_failure(exc):
            raise conflict("site_exists", "a site with that id exists")
        raise
    return site


def rotate_secret(site_id: str) -> str:
    site = get_site(site_id)
    secret = secrets.token_hex(32)
    site.update(actions=[Site.secret.set(secret)])
    return secret


def create_agent(site_id: str, email: str, password: str, name: str, role: str = "agent",
                 avatar_url: Optional[str] = None) -> Agent:
    """A new agent of the site; ``role`` owner also manages the site (chalicelib/admin.py)."""
    if role not in ("owner", "agent"):
        raise bad_request("invalid_role", "role must be owner or agent")
    get_site(site_id)
    email = email.strip().lower()
    if not re.match(_EMAIL, email):
        raise bad_request("invalid_email", "not an email address")
    if len(password) < 8:
        raise bad_request("weak_password", "passwords need at least 8 characters")
    agent = Agent(
        site_id,
        email,
        agent_id=ids.random_id("agent", 9),
        name=name,
        password_hash=hash_password(password),
        created_at=int(clock.now()),
        role=role,
        avatar_url=avatar_url,
    )
    try:
        agent.save(condition=Agent.email.does_not_exist())
    except PutError as exc:
        if is_condition_failure(exc):
            raise conflict("agent_exists", "an agent with that email exists")
        raise
    return agent


DEFAULT_UPLOAD_TYPES = ["image/png", "image/jpeg", "image/gif", "image/webp", "application/pdf", "text/plain"]


def upload_policy(site: Site) -> dict:
    """What a site's visitors and agents may upload (clients check it before uploading)."""
    return {
        "max_bytes": int(site.upload_max_bytes or settings().upload_max_bytes),
        "allowed_types": list(site.upload_types or DEFAULT_UPLOAD_TYPES),
    }


def identity_hash(secret: str, user_id: str) -> str:
    """What a site's server computes for its logged-in user: hex HMAC-SHA256(secret, user_id)."""
    return hmac.new(secret.encode(), user_id.encode(), hashlib.sha256).hexdigest()


def check_identity_hash(site: Site, user_id: str, user_hash: Optional[str]) -> None:
    if not isinstance(user_hash, str) or not user_hash:
        raise forbidden("identity_hash_required", "a user_id needs its user_hash")
    if not hmac.compare_digest(identity_hash(site.secret, user_id).encode(), user_hash.lower().encode()):
        raise forbidden("identity_hash_invalid", "user_hash does not match user_id")


def check_origin(site: Site, origin: Optional[str]) -> None:
    """Browsers always send Origin; a request without one is not from a browser page."""
    if origin is None:
        return
    allowed = site.allowed_origins or []
    if "*" in allowed or origin.rstrip("/") in allowed:
        return
    raise forbidden("origin_not_allowed", "this origin may not use the site's chat")


def embed_snippet(site_id: str, script_url: str) -> str:
    return (
        "<script>\n"
        "  window.Kefu=window.Kefu||function(){(Kefu.q=Kefu.q||[]).push(arguments)};\n"
        f"  Kefu('boot', {{siteId: '{site_id}'}});\n"
        "</script>\n"
        f'<script async src="{script_url}" data-site-id="{site_id}"></script>'
    )
