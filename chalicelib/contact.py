"""How to reach a visitor after they leave: the contact they give (pre-chat or offline form) and
the signed link that brings them back into their chat (conversation continuity).

A visitor's email is kept on the visitor item and, as ``contact_email``, on their conversation: an
agent's reply, whose seq update returns the conversation, then knows with no extra read whether
the visitor is gone (no live connections) and can be emailed.

The link back carries a resume token (HS256 with the token secret, ``typ`` resume, 14 days) in the
page URL's fragment, which browsers never send to the shop's server. It names an anonymous
visitor; a verified visitor (``u_``) comes back by logging in on the site instead.
"""
from __future__ import annotations

import re
from typing import Any, Dict, List, Optional
from urllib.parse import urlsplit

import jwt
from pynamodb.exceptions import UpdateError

from chalicelib import clock
from chalicelib.errors import bad_request, forbidden, is_condition_failure
from chalicelib.models import Conversation, Visitor
from chalicelib.tokens import ISSUER, Identity, signing_key

# Patterns are strings, compiled by re on first use and cached: a cold start that checks none pays nothing.
EMAIL = r"^[^@\s<>\"',;]{1,64}@[A-Za-z0-9.-]{1,252}\.[A-Za-z]{2,24}$"
PHONE = r"^\+?[0-9 ()-]{5,24}$"
RESUME_SECONDS = 14 * 24 * 3600
FRAGMENT = "kefu-resume"


def checked_email(value: Any) -> str:
    if not isinstance(value, str) or len(value) > 254 or not re.match(EMAIL, value.strip()):
        raise bad_request("invalid_email", "not an email address")
    return value.strip().lower()


def _fields(body: Dict[str, Any]) -> Dict[str, Optional[str]]:
    unknown = sorted(set(body) - {"name", "email", "phone", "transcript"})
    if unknown:
        raise bad_request("unknown_field", f"unknown field {unknown[0]!r}; known: name, email, phone, transcript")
    found: Dict[str, Optional[str]] = {}
    if body.get("name") is not None:
        if not isinstance(body["name"], str) or not body["name"].strip() or len(body["name"]) > 100:
            raise bad_request("invalid_name", "name: 1-100 characters")
        found["name"] = body["name"].strip()
    if body.get("email") is not None:
        found["email"] = checked_email(body["email"])
    if body.get("phone") is not None:
        if not isinstance(body["phone"], str) or not re.match(PHONE, body["phone"].strip()):
            raise bad_request("invalid_phone", "phone: digits, spaces, + ( ) -, 5-24 characters")
        found["phone"] = body["phone"].strip()
    if not found and body.get("transcript") is not True:
        raise bad_request("empty_contact", "give a name, an email or a phone number")
    return found


def save(identity: Identity, body: Dict[str, Any]) -> Dict[str, Any]:
    """A visitor tells us who they are (the widget's pre-chat or offline form); ``transcript``: true
    asks for the conversation by email when it closes (needs an email, given now or before)."""
    if identity.is_agent or not identity.conversation_id:
        raise forbidden("visitors_only", "only visitors give their contact")
    found = _fields(body)
    transcript = body.get("transcript")
    if transcript is not None and not isinstance(transcript, bool):
        raise bad_request("invalid_transcript", "transcript must be true or false")
    if found:
        actions = [getattr(Visitor, name).set(value) for name, value in found.items()]
        Visitor(identity.site_id, identity.subject).update(actions=actions, condition=Visitor.visitor_id.exists())
    ours = (Conversation.visitor_id == identity.subject) & (Conversation.site_id == identity.site_id)
    actions = [Conversation.contact_email.set(found["email"])] if "email" in found else []
    if transcript is not None:
        actions.append(Conversation.transcript_requested.set(transcript))
        if "email" not in found and transcript:
            ours &= Conversation.contact_email.exists()
    if actions and not _update_conversation(identity, actions, ours):
        raise bad_request("email_required", "a transcript needs an email address")
    return {"contact": found, "transcript": bool(transcript)}


def _update_conversation(identity: Identity, actions: List[Any], condition: Any) -> bool:
    """Write the visitor's contact on their conversation; False if ``condition`` refuses it. A
    reserved conversation without an item is created first (chalicelib/conversations.py): a visitor
    who fills in the form means to write."""
    from chalicelib import conversations  # imports modules that import this one

    for attempt in range(2):
        try:
            Conversation(identity.conversation_id).update(actions=actions, condition=condition)
            return True
        except UpdateError as exc:
            if not is_condition_failure(exc):
                raise
        if attempt == 0 and conversations.is_virtual(conversations.load(identity, identity.conversation_id)):
            conversations.create_reserved(identity.site_id, identity.subject, identity.conversation_id)
            continue
        return False
    return False


def resume_token(site_id: str, visitor_id: str) -> str:
    now = int(clock.now())
    claims = {"iss": ISSUER, "typ": "resume", "site": site_id, "sub": visitor_id, "iat": now,
              "exp": now + RESUME_SECONDS}
    return jwt.encode(claims, signing_key(), algorithm="HS256")


def visitor_from_resume(site_id: str, token: Any) -> str:
    """The anonymous visitor a resume link names, or 403 ``resume_token_invalid``/``_expired``."""
    if not isinstance(token, str) or len(token) > 2048:
        raise forbidden("resume_token_invalid", "the link is not valid")
    try:
        claims = jwt.decode(token, signing_key(), algorithms=["HS256"], issuer=ISSUER,
                            options={"require": ["exp", "sub", "iss"], "verify_exp": False, "verify_iat": False})
    except jwt.PyJWTError:
        raise forbidden("resume_token_invalid", "the link is not valid")
    if not isinstance(claims["exp"], (int, float)) or claims["exp"] <= clock.now():  # Kefu's clock, as issued
        raise forbidden("resume_token_expired", "the link has expired")
    if claims.get("typ") != "resume" or claims.get("site") != site_id or not str(claims["sub"]).startswith("v_"):
        raise forbidden("resume_token_invalid", "the link is not valid")
    return claims["sub"]


def resume_link(page_url: str, site_id: str, visitor_id: str) -> str:
    """The visitor's page, with the widget told to open their chat again."""
    parts = urlsplit(page_url)
    base = page_url.split("#", 1)[0] if parts.scheme in ("http", "https") else page_url
    return f"{base}#{FRAGMENT}={resume_token(site_id, visitor_id)}"
