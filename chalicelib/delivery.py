"""Pushing frames to live WebSocket connections through the API Gateway Management API."""
from __future__ import annotations

import functools
import json
import logging
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Dict, Iterable, List, Optional

from chalicelib.config import settings

log = logging.getLogger("kefu.delivery")

_endpoint_from_event: Optional[str] = None


def remember_event_endpoint(domain_name: str, stage: str) -> None:
    """Inside WebSocket invocations the event names our API; used when no endpoint is configured."""
    global _endpoint_from_event
    _endpoint_from_event = f"https://{domain_name}/{stage}"


def management_endpoint() -> Optional[str]:
    return settings().ws_management_endpoint or _endpoint_from_event


@functools.lru_cache(maxsize=4)
def _client(endpoint: str) -> Any:
    import boto3  # in the Lambda runtime; imported here so REST-only paths never pay for it
    from botocore.config import Config

    return boto3.client(
        "apigatewaymanagementapi",
        endpoint_url=endpoint,
        region_name=settings().region,
        config=Config(connect_timeout=2, read_timeout=5, retries={"max_attempts": 2}),
    )


@functools.lru_cache(maxsize=1)
def _pool() -> ThreadPoolExecutor:
    return ThreadPoolExecutor(max_workers=settings().delivery_threads, thread_name_prefix="deliver")


def encode(frame: Dict[str, Any]) -> bytes:
    return json.dumps(frame, separators=(",", ":"), ensure_ascii=False).encode()


def post(connection_id: str, frame: Dict[str, Any]) -> bool:
    """Post one frame. Returns False when the connection is gone (HTTP 410)."""
    endpoint = management_endpoint()
    if endpoint is None:
        log.warning("no management endpoint configured; dropping frame for %s", connection_id)
        return True
    client = _client(endpoint)
    try:
        client.post_to_connection(ConnectionId=connection_id, Data=encode(frame))
        return True
    except client.exceptions.GoneException:
        return False
    except Exception:
        # A failed push loses nothing: the message is stored and the client's sync fetches it.
        log.exception("post_to_connection failed for %s", connection_id)
        return True


def post_many(connection_ids: Iterable[str], frame: Dict[str, Any]) -> List[str]:
    """Post the same frame to many connections concurrently; return the ids that are gone."""
    targets = list(dict.fromkeys(connection_ids))
    if not targets:
        return []
    if len(targets) == 1:
        return [] if post(targets[0], frame) else [targets[0]]
    results = _pool().map(lambda cid: (cid, post(cid, frame)), targets)
    return [cid for cid, alive in results if not alive]


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
