"""Signed, expiring bearer tokens for visitors and agents (JWT, HS256)."""
from __future__ import annotations

import logging
from typing import Optional

import jwt

from chalicelib import clock
from chalicelib.config import settings
from chalicelib.errors import KefuError, unauthorized

log = logging.getLogger("kefu.tokens")
_said_why: set = set()

ISSUER = "kefu"
ROLES = ("visitor", "agent")
# What an agent may do on their site: an owner manages it (the /v1/admin routes) and is also an agent.
SITE_ROLES = ("owner", "agent")


class Identity:
    """Who is behind a token or a connection. A plain class: a dataclass or a NamedTuple here cost
    every function's cold start about 1 ms (bench/cold_start.py)."""
    __slots__ = ("role", "site_id", "subject", "conversation_id", "email", "version", "site_role")

    def __init__(self, role: str, site_id: str, subject: str, conversation_id: Optional[str] = None,
                 email: Optional[str] = None, version: Optional[int] = None, site_role: Optional[str] = None):
        self.role = role  # visitor | agent
        self.site_id = site_id
        self.subject = subject  # visitor id or agent id
        self.conversation_id = conversation_id  # a visitor's own conversation
        self.email = email  # an agent's login (the agents table's key)
        self.version = version  # the agent's token version when the token was issued
        self.site_role = site_role  # an agent's: owner | agent (SITE_ROLES)

    def __repr__(self) -> str:
        return f"Identity({self.role} {self.subject} of {self.site_id})"

    @property
    def is_agent(self) -> bool:
        return self.role == "agent"

    @property
    def is_owner(self) -> bool:
        return self.is_agent and self.site_role == "owner"


def signing_key() -> str:
    """The token secret, or a 503 ``misconfigured``: never a default anyone could know."""
    cfg = settings()
    if cfg.token_secret:
        return cfg.token_secret
    problem = cfg.missing_secret_reason("KEFU_TOKEN_SECRET")
    if problem not in _said_why:  # once per warm function, not once per request
        _said_why.add(problem)
        log.error("no token secret: %s; refusing to issue or accept tokens", problem)
    raise KefuError("misconfigured", "the service is not configured to sign tokens", 503)


def issue(identity: Identity, ttl_seconds: int) -> tuple[str, int]:
    """Return (token, expires_at epoch seconds)."""
    issued = int(clock.now())
    expires_at = issued + ttl_seconds
    claims = {
        "iss": ISSUER,
        "role": identity.role,
        "site": identity.site_id,
        "sub": identity.subject,
        "iat": issued,
        "exp": expires_at,
    }
    if identity.conversation_id:
        claims["cid"] = identity.conversation_id
    if identity.is_agent:
        claims["em"], claims["ver"] = identity.email, identity.version
        claims["site_role"] = identity.site_role or "agent"
    return jwt.encode(claims, signing_key(), algorithm="HS256"), expires_at


def verify(token: Optional[str], fresh: bool = False) -> Identity:
    """Decode a token or raise a 401 KefuError saying why. ``fresh``: read an agent's standing now,
    not from what this warm function remembers (chalicelib/agents.py)."""
    if not token:
        raise unauthorized("token_missing", "a token is required")
    key = signing_key()
    try:
        claims = jwt.decode(
            token,
            key,
            algorithms=["HS256"],
            issuer=ISSUER,
            options={"require": ["exp", "iat", "sub", "iss"]},
            leeway=0,
        )
    except jwt.ExpiredSignatureError:
        raise unauthorized("token_expired", "the token has expired")
    except jwt.PyJWTError:
        raise unauthorized("token_invalid", "the token is not valid")
    if claims.get("role") not in ROLES or not isinstance(claims.get("site"), str):
        raise unauthorized("token_invalid", "the token is not valid")
    identity = Identity(
        role=claims["role"],
        site_id=claims["site"],
        subject=claims["sub"],
        conversation_id=claims.get("cid"),
        email=claims.get("em"),
        version=claims.get("ver"),
        site_role=claims.get("site_role") if claims.get("site_role") in SITE_ROLES else None,
    )
    if identity.is_agent:
        from chalicelib import agents

        agents.check_current(identity, fresh=fresh)
    return identity


def from_authorization_header(header: Optional[str]) -> Identity:
    if not header or not header.startswith("Bearer "):
        raise unauthorized("token_missing", "send Authorization: Bearer <token>")
    return verify(header[len("Bearer "):].strip())
