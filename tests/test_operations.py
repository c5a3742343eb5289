"""Operations in the functions: one JSON object per log line with the invocation's ids, and one
CloudWatch EMF line per invocation with what it did (chalicelib/observability.py)."""
from __future__ import annotations

import contextlib
import io
import json
import logging

import pytest

from tests.support import message_event


@contextlib.contextmanager
def log_lines(app):
    """Every line the app's log handlers write meanwhile (Chalice's handler writes to stdout)."""
    from chalicelib.observability import JsonFormatter

    stream = io.StringIO()
    ours = [handler for handler in app.log.handlers if isinstance(handler.formatter, JsonFormatter)]
    assert ours, "observability.install(app) formats the app's log handlers"
    previous = [handler.setStream(stream) for handler in ours]
    lines: list = []
    try:
        yield lines
    finally:
        for handler, old in zip(ours, previous):
            handler.setStream(old)
        lines.extend(stream.getvalue().splitlines())


def _parsed(lines):
    entries = [json.loads(line) for line in lines]  # every line is one JSON object
    assert all(isinstance(entry, dict) for entry in entries)
    return entries


def _metrics(entries):
    blocks = [entry for entry in entries if "_aws" in entry]
    assert len(blocks) == 1, entries
    block = blocks[0]
    definition = block["_aws"]["CloudWatchMetrics"]
    assert len(definition) == 1 and definition[0]["Namespace"] == "Kefu"
    assert definition[0]["Dimensions"] == [["Stage"]] and block["Stage"]
    names = [metric["Name"] for metric in definition[0]["Metrics"]]
    assert all(metric["Unit"] == "Count" for metric in definition[0]["Metrics"])
    assert isinstance(block["_aws"]["Timestamp"], int)
    return block, {name: block[name] for name in names}


def _send(harness, connection_id, conversation_id, client_msg_id, text="hello"):
    event = message_event(connection_id, {"action": "send", "conversation_id": conversation_id,
                                          "client_msg_id": client_msg_id, "text": text})
    harness.client.lambda_.invoke("ws_message", event)
    return event


def test_a_message_invocation_writes_one_json_line_with_its_ids_and_its_metrics(harness):
    chat = harness.chat(opened=True)
    harness.mgmt.frames.clear()
    with log_lines(harness.app) as lines:
        event = _send(harness, chat.visitor_conn, chat.visitor["conversation_id"], "second")
    entries = _parsed(lines)
    block, values = _metrics(entries)
    assert block["level"] == "INFO" and block["logger"] == "kefu.metrics" and block["message"] == "metrics"
    assert block["request_id"] == event["requestContext"]["requestId"]
    assert block["connection_id"] == chat.visitor_conn
    assert block["conversation_id"] == chat.visitor["conversation_id"]
    assert block["lambda_request_id"]
    posted = sum(len(frames) for frames in harness.mgmt.frames.values())  # the ack and the agent's copy
    assert harness.mgmt.of_type(chat.visitor_conn, "ack") and harness.mgmt.of_type(chat.agent_conn, "message")
    assert values == {"MessagesStored": 1, "Deliveries": posted}


def test_a_retried_message_is_not_counted_twice_and_410s_are_counted(harness):
    chat = harness.chat(opened=True)
    _send(harness, chat.visitor_conn, chat.visitor["conversation_id"], "once")
    harness.mgmt.gone.add(chat.agent_conn)  # the agent's socket died without a $disconnect
    with log_lines(harness.app) as lines:
        _send(harness, chat.visitor_conn, chat.visitor["conversation_id"], "once")  # the retry: a duplicate ack
        _send(harness, chat.visitor_conn, chat.visitor["conversation_id"], "twice")
    first, second = [_metrics([entry])[1] for entry in _parsed(lines) if "_aws" in entry]
    assert first == {"Deliveries": 1}
    assert second == {"MessagesStored": 1, "Deliveries": 1, "Gone": 1}


def test_rate_limit_refusals_are_counted_once_on_both_apis(harness, monkeypatch, timeline):
    from chalicelib.config import settings

    chat = harness.chat()
    monkeypatch.setenv("KEFU_RATE_LIMIT", "1")
    settings.cache_clear()
    try:
        with log_lines(harness.app) as lines:
            harness.say(chat.visitor, client_msg_id="first")
            refused = harness.rest("POST", f"/v1/conversations/{chat.visitor['conversation_id']}/messages",
                                   {"client_msg_id": "rest", "text": "again"}, token=chat.visitor["token"])
            _send(harness, chat.visitor_conn, chat.visitor["conversation_id"], "ws")
    finally:
        settings.cache_clear()
    assert refused.status_code == 429
    assert harness.mgmt.of_type(chat.visitor_conn, "error")[-1]["code"] == "rate_limited"
    stored, over_rest, over_websocket = [_metrics([entry])[1] for entry in _parsed(lines) if "_aws" in entry]
    assert stored["MessagesStored"] == 1
    assert over_rest == {"RateLimited": 1}
    assert over_websocket == {"RateLimited": 1, "Deliveries": 1}


def test_a_sweep_reports_its_drops(harness, timeline, monkeypatch):
    import functools

    from chalicelib import sweep
    from chalicelib.config import settings

    # Chalice's test context gives 3 s, the sweep's own safety margin: let it run.
    monkeypatch.setattr(sweep, "sweep", functools.partial(sweep.sweep, margin_ms=0))
    harness.chat()
    timeline(settings().heartbeat_timeout + 5)
    event = harness.client.events.generate_cw_event(source="aws.events", detail_type="Scheduled Event",
                                                    detail={}, resources=[])
    with log_lines(harness.app) as lines:
        harness.client.lambda_.invoke("heartbeat_sweep", event)
    entries = _parsed(lines)
    block, values = _metrics(entries)
    assert values["SweepDrops"] == 2  # the visitor's and the agent's connections
    assert block["event_id"] == event["id"]
    assert any(entry["message"].startswith("sweep done") and entry["logger"] == "kefu.sweep" for entry in entries)


def test_an_invocation_that_counted_nothing_writes_no_metrics():
    from chalicelib import observability

    assert observability.flush(observability._snapshot()) is None


def test_existing_log_calls_become_json_with_ids_and_tracebacks():
    from chalicelib import observability

    formatter = observability.JsonFormatter()
    log = logging.getLogger("kefu.delivery")
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        import sys

        record = log.makeRecord(log.name, logging.ERROR, __file__, 1, "post failed for %s", ("conn-1",),
                                sys.exc_info())
    token = observability._ids.set({"request_id": "req-1", "connection_id": "conn-1"})
    try:
        line = formatter.format(record)
    finally:
        observability._ids.reset(token)
    assert "\n" not in line
    entry = json.loads(line)
    assert entry["level"] == "ERROR" and entry["logger"] == "kefu.delivery"
    assert entry["message"] == "post failed for conn-1"
    assert entry["request_id"] == "req-1" and entry["connection_id"] == "conn-1"
    assert "RuntimeError: boom" in entry["exception"]


@pytest.mark.parametrize("module", ["chalicelib.observability"])
def test_observability_imports_nothing_heavy(module):
    """The cold-start goal: no powertools, no boto3, nothing outside the standard library."""
    import subprocess
    import sys

    probe = (f"import sys; before = set(sys.modules); import {module}; "
             "print(sorted(m for m in set(sys.modules) - before if not m.startswith('chalicelib')))")
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    imported = eval(result.stdout)
    assert not [m for m in imported if m.split(".")[0] in ("boto3", "botocore", "aws_lambda_powertools",
                                                           "pynamodb", "chalice")], imported
