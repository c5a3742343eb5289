"""Pages that fit API Gateway: bounded by count and by encoded bytes, continued by opaque cursors.

API Gateway refuses a post over 128 KB, so every list the server sends is cut into pages of at most
``PAGE_BYTES`` of JSON, leaving room for the frame around them.
"""
from __future__ import annotations

import base64
import json
from typing import Any, Callable, Dict, Iterable, List, Optional, Tuple

from chalicelib.errors import bad_request

PAGE_BYTES = 96 * 1024


def encoded_size(value: Any) -> int:
    return len(json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode())


def take(items: Iterable[Any], limit: int, render: Callable[[Any], Dict[str, Any]],
         max_bytes: int = PAGE_BYTES) -> Tuple[List[Dict[str, Any]], Optional[Any], bool]:
    """Render items until ``limit`` or ``max_bytes`` is reached (the first item always fits).

    Returns (rendered, the last item taken, whether any item was left over).
    """
    rendered: List[Dict[str, Any]] = []
    used = 0
    last = None
    for item in items:
        view = render(item)
        size = encoded_size(view) + 1
        if len(rendered) >= limit or (rendered and used + size > max_bytes):
            return rendered, last, True
        rendered.append(view)
        used += size
        last = item
    return rendered, last, False


def encode_cursor(position: List[Any]) -> str:
    raw = json.dumps(position, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: Any, shape: Tuple[type, ...]) -> List[Any]:
    """A cursor this server made: a JSON list of values of the given types, else ``invalid_cursor``."""
    invalid = bad_request("invalid_cursor", "cursor must be a next_cursor this server returned")
    if not isinstance(cursor, str) or not 0 < len(cursor) <= 512:
        raise invalid
    try:
        position = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except ValueError:
        raise invalid
    if not isinstance(position, list) or len(position) != len(shape):
        raise invalid
    for value, kind in zip(position, shape):
        if isinstance(value, bool) or not isinstance(value, kind):
            raise invalid
    return position
