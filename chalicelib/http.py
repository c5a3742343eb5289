"""REST adapters: JSON in, JSON out, a KefuError becomes a 4xx with its machine-readable code."""
from __future__ import annotations

import logging
from typing import Any, Callable, Dict, Optional

from chalice import Response

from chalicelib import contact, conversations, delivery, jsonio, messages, protocol, sessions
from chalicelib.config import settings
from chalicelib.errors import KefuError, bad_request
from chalicelib.tokens import Identity, from_authorization_header

log = logging.getLogger("kefu.http")

MAX_BODY_BYTES = 128 * 1024


def event_headers(event: Dict[str, Any]) -> Dict[str, str]:
    return event.get("headers") or {}


def query_params(event: Dict[str, Any]) -> Dict[str, str]:
    return event.get("queryStringParameters") or {}


def note_websocket_endpoint(event: Dict[str, Any]) -> None:
    context = event.get("requestContext") or {}
    if context.get("domainName") and context.get("stage"):
        delivery.remember_event_endpoint(context["domainName"], context["stage"])


def _json_body(request: Any) -> Dict[str, Any]:
    raw = request.raw_body or b""
    if len(raw) > MAX_BODY_BYTES:
        raise KefuError("body_too_large", f"request bodies are limited to {MAX_BODY_BYTES} bytes", 413)
    if not raw:
        return {}
    body = jsonio.loads(raw)
    if not isinstance(body, dict):
        raise bad_request("invalid_body", "the body must be a JSON object")
    return body


def respond(request: Any, handler: Callable[..., Any], *args: Any, console_only: bool = False) -> Response:
    """Run a handler; ``console_only`` routes (agents') answer browsers only from the console's origins."""
    headers = {"Content-Type": "application/json", **(_console_cors(request) if console_only else {})}
    try:
        result = handler(request, *args)
        if result is None:  # an action that answers nothing (typing)
            return Response(body="", status_code=204, headers=headers)
        return Response(body=result, status_code=200, headers=headers)
    except KefuError as exc:
        if exc.retry_after:
            headers["Retry-After"] = str(exc.retry_after)
        return Response(body=exc.to_dict(), status_code=exc.status, headers=headers)
    except Exception:
        log.exception("request failed")
        return Response(body={"code": "internal_error", "message": "something went wrong; retry"},
                        status_code=500, headers=headers)


def _console_cors(request: Any) -> Dict[str, str]:
    """CORS for agent routes: the requesting origin echoed only if it is one of the console's."""
    origin = _header(request, "origin")
    allowed = settings().console_origins
    headers = {"Vary": "Origin"}
    if origin and ("*" in allowed or origin.rstrip("/") in allowed):
        headers["Access-Control-Allow-Origin"] = origin
    return headers


def console_preflight(request: Any) -> Response:
    """OPTIONS on an agent route (and an owner's: /v1/admin): allowed only for the console's origins."""
    headers = _console_cors(request)
    if "Access-Control-Allow-Origin" in headers:
        headers.update({"Access-Control-Allow-Methods": "GET,POST,PATCH,DELETE,OPTIONS",
                        "Access-Control-Allow-Headers": "Authorization,Content-Type",
                        "Access-Control-Max-Age": "600"})
    return Response(body="", status_code=204, headers=headers)


def _header(request: Any, name: str) -> Optional[str]:
    return request.headers.get(name) if request.headers else None


def json_body(request: Any) -> Dict[str, Any]:
    """The request's JSON object body (bounded, plain JSON), or a 4xx."""
    return _json_body(request)


def caller(request: Any) -> Identity:
    """Who sent the request, from its bearer token, or a 401."""
    return from_authorization_header(_header(request, "authorization"))


def _source_ip(request: Any) -> Optional[str]:
    return ((request.context or {}).get("identity") or {}).get("sourceIp")


def visitor_session(request: Any) -> Dict[str, Any]:
    return sessions.visitor_session(_json_body(request), _header(request, "origin"), _source_ip(request))


def visitor_contact(request: Any) -> Dict[str, Any]:
    return contact.save(caller(request), _json_body(request))


def agent_session(request: Any) -> Dict[str, Any]:
    return sessions.agent_session(_json_body(request), _source_ip(request))


def list_conversations(request: Any) -> Dict[str, Any]:
    identity = from_authorization_header(_header(request, "authorization"))
    params = request.query_params or {}
    page, next_cursor = conversations.list_for_agent(identity, params.get("include_closed") == "true",
                                                     params.get("cursor"), _int_param(params, "limit", None),
                                                     closed=params.get("closed") == "true")
    return {"conversations": page, "next_cursor": next_cursor}


def post_message(request: Any, conversation_id: str) -> Dict[str, Any]:
    identity = from_authorization_header(_header(request, "authorization"))
    body = _json_body(request)
    body["conversation_id"] = conversation_id
    return messages.send(identity, body)


def _int_param(params: Dict[str, str], name: str, default: Optional[int]) -> Optional[int]:
    raw = params.get(name)
    if raw is None:
        return default
    try:
        return int(raw)
    except ValueError:
        raise bad_request(f"invalid_{name}", f"{name} must be an integer")


def get_messages(request: Any, conversation_id: str) -> Dict[str, Any]:
    identity = from_authorization_header(_header(request, "authorization"))
    params = request.query_params or {}
    return messages.sync(identity, conversation_id, _int_param(params, "after_seq", 0),
                         _int_param(params, "limit", None))


def _socket_action(name: str) -> Callable[..., Optional[Dict[str, Any]]]:
    """A WebSocket action over REST, for clients that cannot keep a socket: the body (with the path's
    conversation) is its frame, its answer the frame's reply; no connection is involved."""
    def run(request: Any, conversation_id: Optional[str] = None) -> Optional[Dict[str, Any]]:
        frame = _json_body(request)
        frame.pop("req", None)  # a socket's correlation id: over HTTP the answer is the response
        if conversation_id is not None:
            frame["conversation_id"] = conversation_id
        return protocol.ACTIONS[name](caller(request), frame, None)
    return run


get_state = _socket_action("state")
post_read = _socket_action("read")
post_typing = _socket_action("typing")
post_rating = _socket_action("rate")


def list_canned(request: Any) -> Dict[str, Any]:
    from chalicelib import canned

    return canned.list_for(from_authorization_header(_header(request, "authorization")))


def save_canned(request: Any) -> Dict[str, Any]:
    from chalicelib import canned

    identity = from_authorization_header(_header(request, "authorization"))
    body = _json_body(request)
    return canned.save(identity, body.get("shortcut"), body.get("text"))


def delete_canned(request: Any, shortcut: str) -> Dict[str, Any]:
    from urllib.parse import unquote

    from chalicelib import canned

    return canned.delete(from_authorization_header(_header(request, "authorization")), unquote(shortcut))


def get_reports(request: Any) -> Dict[str, Any]:
    from chalicelib import reports

    identity = from_authorization_header(_header(request, "authorization"))
    params = request.query_params or {}
    return reports.report(identity, params.get("from"), params.get("to"), params.get("agent_id"))


def create_upload(request: Any) -> Dict[str, Any]:
    from chalicelib import attachments  # oss2 and the STS SDK only on this path

    identity = from_authorization_header(_header(request, "authorization"))
    return attachments.grant(identity, _json_body(request))


def attachment_url(request: Any, conversation_id: str) -> Dict[str, Any]:
    from chalicelib import attachments

    identity = from_authorization_header(_header(request, "authorization"))
    return attachments.download_url(identity, conversation_id, (request.query_params or {}).get("key"))
