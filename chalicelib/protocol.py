"""The WebSocket protocol (docs/protocol.md): $connect, frames to actions, $disconnect.

Replies go back through the Management API like any other push; every reply echoes the frame's
``req``. Bad input gets an ``error`` frame with a stable code, and the connection stays open.
"""
from __future__ import annotations

import json
import logging
import time
from collections import defaultdict, deque
from typing import Any, Callable, Deque, Dict, Optional

from chalicelib import (availability, clock, connections, conversations, delivery, jsonio, limits, messages, reports,
                        requeue, sites, tracking, visitors)
from chalicelib.config import settings
from chalicelib.errors import KefuError, bad_request, connection_unknown, forbidden, rate_limited, too_large
from chalicelib.sites import check_origin, get_site
from chalicelib.tokens import Identity, verify

log = logging.getLogger("kefu.protocol")

MAX_FRAME_BYTES = 128 * 1024  # API Gateway's WebSocket payload limit
MAX_REQ_BYTES = 1024


def _header(headers: Optional[Dict[str, str]], name: str) -> Optional[str]:
    for key, value in (headers or {}).items():
        if key.lower() == name:
            return value
    return None


def connect(connection_id: str, query: Optional[Dict[str, str]], headers: Optional[Dict[str, str]]) -> int:
    """$connect: the HTTP status for the handshake (2xx accepts it)."""
    try:
        identity = verify((query or {}).get("token"), fresh=True)
        site = get_site(identity.site_id)
        if identity.is_agent:
            _check_console_origin(_header(headers, "origin"))
        else:
            check_origin(site, _header(headers, "origin"))
        connections.register(connection_id, identity, site)
    except KefuError as exc:
        log.info("refused connection %s: %s", connection_id, exc.code)
        return exc.status
    joined_at = clock.now()
    if identity.is_agent:
        conversations.assign_queued(site, connecting=connection_id)
        # Functions may deliver from a roster read up to KEFU_SITE_CACHE_SECONDS ago (sites.cached_site).
        sites.hold_until_roster_settles(joined_at)
    # A long $connect (handing out a queue) must not look silent to the sweep when it returns.
    connections.heartbeat(connection_id)
    return 200


def _check_console_origin(origin: Optional[str]) -> None:
    allowed = settings().console_origins
    if origin is None or "*" in allowed or origin.rstrip("/") in allowed:
        return
    raise forbidden("origin_not_allowed", "the agent console is not served from this origin")


def disconnect(connection_id: str) -> None:
    identity = connections.identify(connection_id)
    if identity is not None and identity.is_agent:
        # Before the drop, so no failure after it can lose the hand-over; a reload within the
        # grace period finds the agent back online and changes nothing.
        requeue.schedule(identity.site_id, identity.subject, settings().agent_requeue_grace)
    connections.drop(connection_id, identity)


_recent_sends: Dict[str, Deque[float]] = defaultdict(deque)


def _check_agent_rate(connection_id: str) -> None:
    """An agent connection's send rate, kept in the warm function. (A visitor's holds across all
    their sockets and functions: it rides on the conversation update, chalicelib/send_limit.py.)"""
    cfg = settings()
    now = time.monotonic()
    sent = _recent_sends[connection_id]
    while sent and now - sent[0] > cfg.rate_window:
        sent.popleft()
    if len(sent) >= cfg.rate_limit:
        raise rate_limited("rate_limited", f"at most {cfg.rate_limit} messages per {cfg.rate_window} s")
    sent.append(now)


def _agents_only(identity: Identity) -> None:
    if not identity.is_agent:
        raise forbidden("agents_only", "only agents can do that")


def _send(identity: Identity, frame: Dict[str, Any], connection_id: str) -> Dict[str, Any]:
    if isinstance(frame.get("attachment"), dict):
        # Attaching checks and moves the object in OSS (oss2): the REST function's job alone, so the
        # chat functions never carry or import the Aliyun SDKs (docs/protocol.md, uploads).
        raise bad_request("attachment_via_rest", "send a message with an attachment with "
                                                 "POST /v1/conversations/{conversation_id}/messages")
    if identity.is_agent:
        _check_agent_rate(connection_id)
    return messages.send(identity, frame, sender_connection=connection_id)


def _sync(identity: Identity, frame: Dict[str, Any], connection_id: str) -> Dict[str, Any]:
    return messages.sync(identity, frame.get("conversation_id"), frame.get("after_seq", 0), frame.get("limit"))


def _read(identity: Identity, frame: Dict[str, Any], connection_id: Optional[str]) -> Dict[str, Any]:
    return messages.mark_read(identity, frame.get("conversation_id"), frame.get("seq"), connection_id)


def _visitor_rate(identity: Identity, action: str, limit: int) -> None:
    if not identity.is_agent:
        limits.hit(f"{action}:{identity.site_id}:{identity.subject}", limit, settings().rate_window, f"{action} frames")


def _typing(identity: Identity, frame: Dict[str, Any], connection_id: Optional[str]) -> None:
    _visitor_rate(identity, "typing", settings().typing_limit)
    messages.typing(identity, frame.get("conversation_id"), frame.get("is_typing", True), connection_id)


def _ping(identity: Identity, frame: Dict[str, Any], connection_id: str) -> Dict[str, Any]:
    if not connections.heartbeat(connection_id):  # swept meanwhile: a pong would hide it
        raise connection_unknown()
    return {"type": "pong", "time": int(time.time() * 1000)}


def _page_view(identity: Identity, frame: Dict[str, Any], connection_id: str) -> Dict[str, Any]:
    _visitor_rate(identity, "page_view", settings().page_view_limit)
    tracking.page_view(identity, frame)
    return {"type": "page_view_ok"}


def _state(identity: Identity, frame: Dict[str, Any], connection_id: Optional[str]) -> Dict[str, Any]:
    site = get_site(identity.site_id)
    state: Dict[str, Any] = {"type": "state", "role": identity.role, "id": identity.subject,
                             "connection_id": connection_id, "agents_online": connections.online_agents(site)}
    if identity.is_agent:
        state["conversations"], state["next_cursor"] = conversations.list_for_agent(identity)
        state["agents"] = availability.agents_of(site)
        state["status"] = availability.availability_of(site, identity.subject)
    else:
        state["conversation"] = conversations.for_visitor(
            conversations.view(conversations.load(identity, identity.conversation_id)))
    return state


def _list(identity: Identity, frame: Dict[str, Any], connection_id: str) -> Dict[str, Any]:
    include_closed = frame.get("include_closed", False)
    if not isinstance(include_closed, bool):
        raise bad_request("invalid_include_closed", "include_closed must be true or false")
    closed = frame.get("closed", False)
    if not isinstance(closed, bool):
        raise bad_request("invalid_closed", "closed must be true or false")
    page, next_cursor = conversations.list_for_agent(identity, include_closed, frame.get("cursor"), frame.get("limit"),
                                                     closed=closed)
    return {"type": "conversations", "conversations": page, "next_cursor": next_cursor}


def _search(identity: Identity, frame: Dict[str, Any], connection_id: str) -> Dict[str, Any]:
    from chalicelib import search  # the index's code only on the path that uses it

    return search.search(identity, frame.get("query"), frame.get("cursor"), frame.get("limit"))


def _pages(identity: Identity, frame: Dict[str, Any], connection_id: str) -> Dict[str, Any]:
    return conversations.pages_of(identity, frame.get("conversation_id"))


def _claim(identity: Identity, frame: Dict[str, Any], connection_id: str) -> Dict[str, Any]:
    _agents_only(identity)
    return {"type": "conversation", "event": "assigned",
            "conversation": conversations.claim(identity, frame.get("conversation_id"), connection_id)}


def _transfer(identity: Identity, frame: Dict[str, Any], connection_id: str) -> Dict[str, Any]:
    _agents_only(identity)
    return {"type": "conversation", "event": "assigned",
            "conversation": conversations.transfer(identity, frame.get("conversation_id"), frame.get("agent_id"),
                                                           connection_id)}


def _close(identity: Identity, frame: Dict[str, Any], connection_id: str) -> Dict[str, Any]:
    _agents_only(identity)
    return {"type": "conversation", "event": "closed",
            "conversation": conversations.close(identity, frame.get("conversation_id"), connection_id)}


def _visitors(identity: Identity, frame: Dict[str, Any], connection_id: str) -> Dict[str, Any]:
    return visitors.page(identity, frame.get("cursor"), frame.get("limit"))


def _invite(identity: Identity, frame: Dict[str, Any], connection_id: str) -> Dict[str, Any]:
    _agents_only(identity)
    _check_agent_rate(connection_id)
    return visitors.invite(identity, frame, connection_id)


def _label(identity: Identity, frame: Dict[str, Any], connection_id: str) -> Dict[str, Any]:
    from chalicelib import labels

    _agents_only(identity)
    return {"type": "conversation", "event": "labeled",
            "conversation": labels.label(identity, frame.get("conversation_id"), frame.get("add"), frame.get("remove"),
                                         connection_id)}


def _status(identity: Identity, frame: Dict[str, Any], connection_id: str) -> Dict[str, Any]:
    return availability.set_status(identity, frame.get("status"), connection_id)


def _rate(identity: Identity, frame: Dict[str, Any], connection_id: Optional[str]) -> Dict[str, Any]:
    from chalicelib import ratings

    _visitor_rate(identity, "rate", settings().typing_limit)
    return ratings.rate(identity, frame.get("conversation_id"), frame.get("rating"), frame.get("comment"),
                        connection_id)


def _canned_list(identity: Identity, frame: Dict[str, Any], connection_id: str) -> Dict[str, Any]:
    from chalicelib import canned

    return canned.list_for(identity)


def _canned_save(identity: Identity, frame: Dict[str, Any], connection_id: str) -> Dict[str, Any]:
    from chalicelib import canned

    return canned.save(identity, frame.get("shortcut"), frame.get("text"), connection_id)


def _canned_delete(identity: Identity, frame: Dict[str, Any], connection_id: str) -> Dict[str, Any]:
    from chalicelib import canned

    return canned.delete(identity, frame.get("shortcut"), connection_id)


def _reports(identity: Identity, frame: Dict[str, Any], connection_id: str) -> Dict[str, Any]:
    return reports.report(identity, frame.get("from"), frame.get("to"), frame.get("agent_id"))


# Over REST (chalicelib/http.py) state, read, typing and rate run with no connection: None.
ACTIONS: Dict[str, Callable[[Identity, Dict[str, Any], Any], Optional[Dict[str, Any]]]] = {
    "send": _send,
    "sync": _sync,
    "read": _read,
    "typing": _typing,
    "ping": _ping,
    "page_view": _page_view,
    "state": _state,
    "list": _list,
    "pages": _pages,
    "claim": _claim,
    "transfer": _transfer,
    "close": _close,
    "search": _search,
    "visitors": _visitors,
    "invite": _invite,
    "label": _label,
    "status": _status,
    "rate": _rate,
    "canned_list": _canned_list,
    "canned_save": _canned_save,
    "canned_delete": _canned_delete,
    "reports": _reports,
}


def _parse(body: Any) -> Dict[str, Any]:
    if not isinstance(body, str):
        raise bad_request("invalid_frame", "a frame is a JSON object")
    if len(body.encode()) > MAX_FRAME_BYTES:
        raise too_large("frame_too_large", f"frames are limited to {MAX_FRAME_BYTES} bytes")
    frame = jsonio.loads(body)
    if not isinstance(frame, dict):
        raise bad_request("invalid_frame", "a frame is a JSON object")
    return frame


def message(connection_id: str, body: Any) -> None:
    """$default: run the frame's action and post the reply (or an error frame) to the sender."""
    req: Any = None
    try:
        frame = _parse(body)
        if "req" in frame and len(json.dumps(frame["req"])) > MAX_REQ_BYTES:
            raise bad_request("invalid_req", f"req is echoed back, so at most {MAX_REQ_BYTES} bytes of JSON")
        req = frame.get("req")
        action = frame.get("action")
        if action is None:
            raise bad_request("missing_action", "a frame needs an action")
        handler = ACTIONS.get(action) if isinstance(action, str) else None
        if handler is None:
            raise bad_request("unknown_action", f"unknown action; known: {', '.join(sorted(ACTIONS))}")
        identity = connections.identify(connection_id)
        if identity is None:
            raise connection_unknown()
        reply = handler(identity, frame, connection_id)
    except KefuError as exc:
        reply = {"type": "error", **exc.to_dict()}
    except Exception:
        log.exception("action failed on %s", connection_id)
        reply = {"type": "error", "code": "internal_error", "message": "something went wrong; retry"}
    if reply is None:
        return
    if req is not None:
        reply["req"] = req
    outcome = delivery.post(connection_id, reply)
    if outcome == delivery.TOO_LARGE:
        outcome = delivery.post(connection_id, {"type": "error", "code": "reply_too_large", "req": req,
                                                "message": "the reply is over API Gateway's 128 KB limit"})
    if outcome == delivery.GONE:
        connections.drop(connection_id)
    elif reply.get("code") == "connection_unknown":
        delivery.close(connection_id)  # the protocol's answer is "reconnect": make it happen
