"""Identifiers the server chooses: random, URL-safe, unguessable."""
from __future__ import annotations

import secrets
import time


def random_id(prefix: str, nbytes: int = 16) -> str:
    return f"{prefix}_{secrets.token_urlsafe(nbytes).replace('-', 'x').replace('_', 'y')}"


def sortable_id(prefix: str) -> str:
    """Time-ordered id (milliseconds, then randomness), for messages."""
    return f"{prefix}_{int(time.time() * 1000):013d}{secrets.token_hex(6)}"
