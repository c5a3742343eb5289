"""Identity that expires, and anonymous ids only as issued (issue 12). Measured before: the
user_hash HMAC never expires (a replay takes over the verified user's conversation) and a client
could pick any anonymous visitor_id of the right shape."""
from __future__ import annotations

import time

import jwt
import pytest


def _token(site, claims, key=None):
    return jwt.encode(claims, key or site.secret, algorithm="HS256")


def _session(harness, site, **fields):
    return harness.rest("POST", "/v1/visitor/session", {"site_id": site.site_id, **fields},
                        headers={"Origin": "https://shop.example"})


def test_an_identity_token_signed_by_the_site_verifies_the_user(harness):
    site = harness.site()
    token = _token(site, {"sub": "customer-42", "name": "Lin", "exp": int(time.time()) + 300})
    session = _session(harness, site, identity_token=token).json_body
    assert session["visitor_id"] == "u_customer-42"
    again = _session(harness, site, identity_token=token).json_body
    assert again["conversation_id"] == session["conversation_id"]


@pytest.mark.parametrize("sub,expires_in,key,code", [
    ("customer-42", -60, None, "identity_token_expired"),  # a replay after expiry
    ("customer-42", None, None, "identity_token_invalid"),  # no exp: it would never expire
    ("customer-42", 7 * 86400, None, "identity_token_invalid"),
    ("customer-42", 300, "not-the-site-secret-but-as-long-as-one-0123", "identity_token_invalid"),
    ("", 300, None, "identity_token_invalid"),
])
def test_identity_tokens_that_expired_or_were_never_valid_are_refused(harness, sub, expires_in, key, code):
    site = harness.site()
    claims = {"sub": sub} if expires_in is None else {"sub": sub, "exp": int(time.time()) + expires_in}
    response = _session(harness, site, identity_token=_token(site, claims, key))
    assert (response.status_code, response.json_body["code"]) == (403, code)


def test_a_made_up_anonymous_id_gets_a_new_visitor_not_someone_elses(harness):
    site = harness.site()
    victim = _session(harness, site).json_body
    guessed = "v_" + "A" * 40  # the right shape, not signed by this server
    session = _session(harness, site, visitor_id=guessed).json_body
    assert session["visitor_id"] not in (guessed, victim["visitor_id"])
    tampered = victim["visitor_id"][:-1] + ("0" if victim["visitor_id"][-1] != "0" else "1")
    assert _session(harness, site, visitor_id=tampered).json_body["conversation_id"] != victim["conversation_id"]
    # the id this server issued brings the visitor back
    assert _session(harness, site, visitor_id=victim["visitor_id"]).json_body["conversation_id"] == \
        victim["conversation_id"]
