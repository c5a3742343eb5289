"""Limits that hold across function instances: counters in DynamoDB, never in a function's memory.

``hit`` counts one event in a fixed window (one item per key and window, removed by TTL) and
answers 429 ``rate_limited`` past the limit. Login failures back off exponentially per account
(``login_allowed`` / ``login_failed`` / ``login_succeeded``). None of this is on the chat path:
a visitor's send rate rides on the conversation update the send makes anyway
(chalicelib/send_limit.py).
"""
from __future__ import annotations

from pynamodb.exceptions import DoesNotExist, UpdateError

from chalicelib import clock
from chalicelib.errors import KefuError, is_condition_failure, rate_limited
from chalicelib.models import Limit

LOGIN_FREE_FAILURES = 5  # then each further failure doubles the wait
LOGIN_FIRST_WAIT = 30  # seconds
LOGIN_MAX_WAIT = 3600
LOGIN_FORGET_AFTER = 24 * 3600


def hit(key: str, limit: int, window_seconds: int, what: str) -> None:
    """Count one event for ``key`` in the current window; 429 once ``limit`` were counted."""
    window = int(clock.now() // window_seconds)
    try:
        Limit(f"{key}#{window}").update(
            actions=[Limit.count.add(1), Limit.expires_at.set((window + 1) * window_seconds + 60)],
            condition=Limit.count.does_not_exist() | (Limit.count < limit),
        )
    except UpdateError as exc:
        if not is_condition_failure(exc):
            raise
        raise rate_limited("rate_limited", f"at most {limit} {what} per {window_seconds} s")


def _login_key(site_id: str, email: str) -> str:
    return f"login:{site_id}:{email}"


def login_wait(failures: int) -> float:
    """Seconds an account must wait after ``failures`` failed logins in a row."""
    if failures < LOGIN_FREE_FAILURES:
        return 0
    return min(LOGIN_MAX_WAIT, LOGIN_FIRST_WAIT * 2 ** (failures - LOGIN_FREE_FAILURES))


def login_allowed(site_id: str, email: str) -> None:
    """429 ``too_many_attempts`` while the account backs off after failed logins."""
    try:
        record = Limit.get(_login_key(site_id, email), consistent_read=True)
    except DoesNotExist:
        return
    wait = login_wait(int(record.count or 0)) - (clock.now() - float(record.last_at or 0))
    if wait > 0:
        raise KefuError("too_many_attempts", f"too many failed logins; try again in {int(wait) + 1} s", 429,
                        retry_after=int(wait) + 1)


def login_failed(site_id: str, email: str) -> None:
    now = clock.now()
    Limit(_login_key(site_id, email)).update(actions=[
        Limit.count.add(1), Limit.last_at.set(now), Limit.expires_at.set(int(now) + LOGIN_FORGET_AFTER)])


def login_succeeded(site_id: str, email: str) -> None:
    Limit(_login_key(site_id, email)).delete()

