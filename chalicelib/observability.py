"""Structured JSON logs and CloudWatch metrics (EMF) for every invocation, standard library only.

    observability.install(app)    # app.py, once: JSON logs + one metrics line per invocation

- **Logs**: every record of the app's logger (``kefu`` and ``kefu.*``, so every existing call in
  chalicelib) becomes one JSON object on one line: ``level``, ``logger``, ``message``, the current
  invocation's ids (``request_id`` from API Gateway, which the access logs carry too;
  ``lambda_request_id``, which Lambda's START/REPORT lines and X-Ray carry; ``connection_id``;
  ``conversation_id`` when the frame or route names one), ``xray_trace_id`` when tracing is on,
  and ``exception`` with the traceback. CloudWatch Logs Insights queries the fields directly.
- **Metrics**: at the end of each invocation, one line in CloudWatch's Embedded Metric Format (a
  JSON log line with an ``_aws`` block: CloudWatch Logs turns it into metrics; no SDK, no API call)
  with the counts of that invocation, in namespace ``Kefu``, dimension ``Stage``. Only counts that
  are not zero are written, and nothing when all are (a ping that posts nothing costs nothing).

Why not aws-lambda-powertools (Logger, Metrics)? It is the field's standard, but importing it costs
more than this whole module does at cold start, and issue 13's goal is a chat function that starts
faster than a bare Chalice app; what we need from it is ~100 lines. Nothing heavy is imported here.

Counts are taken process-wide (delivery outcomes from ``delivery.stats``, the rest from ``count``)
and an invocation reports what changed while it ran: exact on Lambda, which runs one invocation at
a time per process; in the local stack, where invocations overlap in one process, a line may
include a neighbour's counts.
"""
from __future__ import annotations

import json
import logging
import os
import re
import sys
import threading
import time
from collections import Counter
from contextvars import ContextVar
from typing import Any, Callable, Dict, Optional

NAMESPACE = "Kefu"

# Metric name -> the counter it reports. Delivery outcomes are chalicelib.delivery's own names.
METRICS = {
    "MessagesStored": "messages_stored",
    "Deliveries": "delivered",
    "Gone": "gone",  # 410: the connection no longer exists
    "PayloadTooLarge": "too_large",
    "FailedPosts": "failed",
    "SweepDrops": "sweep_drops",
    "RateLimited": "rate_limited",
    "MailsSent": "mails_sent",  # chalicelib/outbox.py
    "MailErrors": "mail_errors",  # a mail that could not be queued, or a failed attempt to send one
    "MailsFailed": "mails_failed",  # a mail given up on after its last attempt
}
# Error codes that mean "refused for going too fast" (HTTP 429 on REST, an error frame on WebSocket).
RATE_LIMIT_CODES = frozenset({"rate_limited", "too_many_connections"})

_counts: Counter = Counter()
_lock = threading.Lock()
_ids: ContextVar[Optional[Dict[str, str]]] = ContextVar("kefu_invocation_ids", default=None)
metrics_log = logging.getLogger("kefu.metrics")
metrics_log.setLevel(logging.INFO)  # metrics are written whatever level the app logs at


def count(name: str, value: int = 1) -> None:
    """Add to a process-wide counter (one of METRICS' values); reported by the invocation it falls in."""
    if value:
        with _lock:
            _counts[name] += value


def note_reply(body: Any, status: Optional[int] = None) -> None:
    """What the protocol tells a client says what happened: an ``ack`` that is not a duplicate is a
    message stored; a 429, or an error with a rate-limit code, is a refusal. Called for every frame
    posted (chalicelib.delivery) and every REST response (the middleware below)."""
    if status == 429:
        count("rate_limited")
        return
    if not isinstance(body, dict):
        return
    if body.get("type") == "ack" and not body.get("duplicate"):
        count("messages_stored")
    elif body.get("code") in RATE_LIMIT_CODES:
        count("rate_limited")


def set_ids(**ids: Optional[str]) -> None:
    """Add ids to the current invocation's log context (e.g. a conversation id learnt later)."""
    current = _ids.get()
    if current is not None:
        current.update({k: v for k, v in ids.items() if v})


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line, with the current invocation's ids."""

    def format(self, record: logging.LogRecord) -> str:
        entry: Dict[str, Any] = {
            "timestamp": int(record.created * 1000),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        entry.update(_ids.get() or {})
        trace = os.environ.get("_X_AMZN_TRACE_ID")  # set per invocation by Lambda when tracing is on
        if trace:
            entry["xray_trace_id"] = trace
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        fields = getattr(record, "fields", None)  # logger.info(..., extra={"fields": {...}})
        if isinstance(fields, dict):
            entry.update(fields)
        return json.dumps(entry, default=str, separators=(",", ":"), ensure_ascii=False)


# Patterns are strings, compiled by re on first use and cached: a cold start that checks none pays nothing.
_CONVERSATION = r'"conversation_id"\s*:\s*"([^"\\]{1,128})"'


def _ids_of(event: Any) -> Dict[str, str]:
    """requestId, connectionId and the conversation from an event Chalice's middleware hands over."""
    ids: Dict[str, str] = {}
    lambda_context = getattr(event, "lambda_context", None) or getattr(event, "context", None)
    request_id = getattr(lambda_context, "aws_request_id", None)
    if request_id:
        ids["lambda_request_id"] = request_id
    uri_params = getattr(event, "uri_params", None)
    if isinstance(getattr(event, "context", None), dict):  # REST: Request.context is the requestContext
        context = event.context
        conversation = (uri_params or {}).get("conversation_id")
    else:
        raw = event.to_dict() if hasattr(event, "to_dict") else {}
        context = raw.get("requestContext") or {}
        body = raw.get("body")
        # A regex, not a second json.loads of a frame of up to 128 KB: the protocol parses it anyway.
        found = re.search(_CONVERSATION, body) if isinstance(body, str) else None
        conversation = found.group(1) if found else None
        if raw.get("id") and "detail-type" in raw:  # a scheduled event
            ids["event_id"] = raw["id"]
    for key, name in (("requestId", "request_id"), ("connectionId", "connection_id")):
        if context.get(key):
            ids[name] = context[key]
    if conversation:
        ids["conversation_id"] = conversation
    return ids


def _snapshot() -> Counter:
    from chalicelib import delivery  # imported by every handler already; lazily here: no cycle

    with _lock:
        snapshot = Counter(_counts)
    snapshot.update(delivery.stats)
    return snapshot


def flush(before: Counter, function: Optional[str] = None) -> Optional[Dict[str, Any]]:
    """Write one EMF line with what was counted since ``before``; returns it (None when all zero)."""
    changed = _snapshot()
    changed.subtract(before)
    values = {metric: changed[counter] for metric, counter in METRICS.items() if changed[counter] > 0}
    if not values:
        return None
    stage = os.environ.get("KEFU_STAGE", "local")
    document: Dict[str, Any] = {
        "_aws": {"Timestamp": int(time.time() * 1000), "CloudWatchMetrics": [{
            "Namespace": NAMESPACE, "Dimensions": [["Stage"]],
            "Metrics": [{"Name": name, "Unit": "Count"} for name in values]}]},
        "Stage": stage,
        **values,
    }
    if function:
        document["function"] = function
    metrics_log.info("metrics", extra={"fields": document})
    return document


def _middleware(event: Any, get_response: Callable[[Any], Any]) -> Any:
    token = _ids.set(_ids_of(event))
    before = _snapshot()
    try:
        response = get_response(event)
        status = getattr(response, "status_code", None)
        if status is not None:
            note_reply(getattr(response, "body", None), status)
        return response
    finally:
        try:
            flush(before, os.environ.get("AWS_LAMBDA_FUNCTION_NAME"))
        except Exception:  # metrics must never fail an invocation
            logging.getLogger("kefu.metrics").exception("metrics flush failed")
        _ids.reset(token)


def install(app: Any) -> None:
    """JSON formatting for the app's log handlers, and the per-invocation middleware for every event."""
    formatter = JsonFormatter()
    if not app.log.handlers:  # Chalice(configure_logs=False): give the app logger one
        app.log.addHandler(logging.StreamHandler(sys.stdout))
        app.log.propagate = False
    for handler in app.log.handlers:
        handler.setFormatter(formatter)
    app.register_middleware(_middleware, "all")
