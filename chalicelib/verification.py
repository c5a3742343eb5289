"""Who a visitor is: identity tokens from the site's server, and anonymous ids this server signs.

A site that knows its user proves it with an identity token: a JWT (HS256) signed with the site
secret, naming the user (``sub``) and expiring (``exp`` required, at most a day ahead), as
Intercom's messenger JWT does. A replayed token stops working when it expires. The older
``user_hash`` (HMAC of the user id) is still accepted but never expires: docs/security.md.

An anonymous visitor's id is random and signed with the token secret, so a client can only come
back as an id this server issued, never pick one.
"""
from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import string
from typing import Any, Optional, Tuple

import jwt

from chalicelib import clock
from chalicelib.errors import forbidden
from chalicelib.models import Site
from chalicelib.tokens import signing_key

MAX_IDENTITY_TOKEN_SECONDS = 24 * 3600
# Patterns are strings, compiled by re on first use and cached: a cold start that checks none pays nothing.
_USER_ID = r"^[\x21-\x7e]{1,128}$"
_RANDOM_CHARS = 24
_SIGNATURE_CHARS = 16


def from_identity_token(site: Site, token: Any) -> Tuple[str, Optional[str]]:
    """(user id, name) from a valid identity token, else 403 ``identity_token_invalid`` or
    ``identity_token_expired``."""
    if not isinstance(token, str) or len(token) > 4096:
        raise forbidden("identity_token_invalid", "identity_token must be a JWT signed with the site secret")
    try:
        claims = jwt.decode(token, site.secret, algorithms=["HS256"], options={"require": ["exp", "sub"]})
    except jwt.ExpiredSignatureError:
        raise forbidden("identity_token_expired", "the identity token has expired; make a new one")
    except jwt.PyJWTError:
        raise forbidden("identity_token_invalid", "identity_token must be a JWT signed with the site secret")
    user_id, name = claims.get("sub"), claims.get("name")
    if not isinstance(user_id, str) or not re.match(_USER_ID, user_id):
        raise forbidden("identity_token_invalid", "the token's sub must be 1-128 printable characters")
    if not isinstance(claims["exp"], (int, float)) or claims["exp"] > clock.now() + MAX_IDENTITY_TOKEN_SECONDS:
        raise forbidden("identity_token_invalid", "identity tokens may live at most 24 hours")
    return user_id, name if isinstance(name, str) and len(name) <= 100 else None


def _signature(random_part: str) -> str:
    mac = hmac.new(signing_key().encode(), f"visitor:{random_part}".encode(), hashlib.sha256)
    return mac.hexdigest()[:_SIGNATURE_CHARS]


def new_visitor_id() -> str:
    random_part = "".join(secrets.choice(string.ascii_letters + string.digits) for _ in range(_RANDOM_CHARS))
    return f"v_{random_part}{_signature(random_part)}"


def is_issued_visitor_id(visitor_id: str) -> bool:
    body = visitor_id[2:]
    if not visitor_id.startswith("v_") or len(body) != _RANDOM_CHARS + _SIGNATURE_CHARS:
        return False
    random_part, signature = body[:_RANDOM_CHARS], body[_RANDOM_CHARS:]
    return hmac.compare_digest(_signature(random_part).encode(), signature.encode())
