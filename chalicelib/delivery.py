"""Pushing frames to live WebSocket connections through the API Gateway Management API."""
from __future__ import annotations

import functools
import json
import logging
import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Dict, Iterable, List, Optional

from chalicelib import observability
from chalicelib.config import settings

log = logging.getLogger("kefu.delivery")

MAX_POST_BYTES = 128 * 1024  # API Gateway's limit for one post_to_connection

_endpoint_from_event: Optional[str] = None


def remember_event_endpoint(domain_name: str, stage: str) -> None:
    """Inside WebSocket invocations the event names our API; used when no endpoint is configured."""
    global _endpoint_from_event
    _endpoint_from_event = f"https://{domain_name}/{stage}"


def management_endpoint() -> Optional[str]:
    return settings().ws_management_endpoint or _endpoint_from_event


_clients: Dict[str, Any] = {}
_clients_lock = threading.Lock()


def _client(endpoint: str) -> Any:
    """One Management API client per endpoint (chalicelib/management_api.py), built once: threads
    pushing at once (a sweep's drops) share it, each on its own kept-alive connection."""
    client = _clients.get(endpoint)
    if client is not None:
        return client
    with _clients_lock:
        if endpoint not in _clients:
            from chalicelib.management_api import ManagementApi

            _clients[endpoint] = ManagementApi(endpoint, settings().region)
        return _clients[endpoint]


@functools.lru_cache(maxsize=1)
def _pool() -> ThreadPoolExecutor:
    return ThreadPoolExecutor(max_workers=settings().delivery_threads, thread_name_prefix="deliver")


def encode(frame: Dict[str, Any]) -> bytes:
    return json.dumps(frame, separators=(",", ":"), ensure_ascii=False).encode()


# What became of a post. Only GONE means the connection no longer exists.
DELIVERED, GONE, TOO_LARGE, FAILED = "delivered", "gone", "too_large", "failed"

# Outcomes since the function started, for logs and metrics: a post that fails is counted, never
# taken for delivered.
stats: Counter = Counter()
_stats_lock = threading.Lock()


def _count(outcome: str) -> str:
    with _stats_lock:
        stats[outcome] += 1
    return outcome


def post(connection_id: str, frame: Dict[str, Any]) -> str:
    """Post one frame; returns DELIVERED, GONE (HTTP 410), TOO_LARGE or FAILED."""
    observability.note_reply(frame)  # an ack is a message stored, a rate_limited error a refusal
    endpoint = management_endpoint()
    if endpoint is None:
        log.error("no management endpoint configured; frame for %s not delivered", connection_id)
        return _count(FAILED)
    data = encode(frame)
    if len(data) > MAX_POST_BYTES:
        log.error("frame of %d bytes (%s) for %s is over API Gateway's limit; not delivered",
                  len(data), frame.get("type"), connection_id)
        return _count(TOO_LARGE)
    client = _client(endpoint)
    try:
        client.post_to_connection(ConnectionId=connection_id, Data=data)
        return _count(DELIVERED)
    except client.exceptions.GoneException:
        return _count(GONE)
    except client.exceptions.PayloadTooLargeException:
        log.error("API Gateway refused a %d-byte frame for %s as too large", len(data), connection_id)
        return _count(TOO_LARGE)
    except Exception:
        # A failed push loses no message: it is stored and the client's sync fetches it.
        log.exception("post_to_connection failed for %s", connection_id)
        return _count(FAILED)


def post_many(connection_ids: Iterable[str], frame: Dict[str, Any]) -> List[str]:
    """Post the same frame to many connections concurrently; return the ids that are gone."""
    targets = list(dict.fromkeys(connection_ids))
    if not targets:
        return []
    if len(targets) == 1:
        return targets if post(targets[0], frame) == GONE else []
    results = _pool().map(lambda cid: (cid, post(cid, frame)), targets)
    return [cid for cid, outcome in results if outcome == GONE]


def close(connection_id: str) -> None:
    """Ask API Gateway to close a connection; a 410 means it is closed already."""
    endpoint = management_endpoint()
    if endpoint is None:
        return
    client = _client(endpoint)
    try:
        client.delete_connection(ConnectionId=connection_id)
    except client.exceptions.GoneException:
        pass
