"""Site secrets and the token secret appear in no response, no pushed frame and no log line."""
from __future__ import annotations

import json
import logging

from chalicelib.config import settings


def test_no_secret_in_any_response_frame_or_log(harness, caplog, no_rate_limits):
    # Everything Kefu logs, at any level, and anything any library logs at INFO or above (the
    # request dumps botocore and pynamodb write at DEBUG are off in every deployment).
    caplog.set_level(logging.DEBUG, logger="kefu")
    caplog.set_level(logging.INFO)
    site, agent, agent_conn, visitor, visitor_conn = harness.chat()
    cid = visitor["conversation_id"]
    seen = [json.dumps(agent), json.dumps(visitor)]
    for conn, frame in [
        (visitor_conn, {"action": "send", "conversation_id": cid, "client_msg_id": "m1", "text": "hi"}),
        (visitor_conn, {"action": "page_view", "url": "https://shop.example/a", "title": "A"}),
        (visitor_conn, {"action": "state"}),
        (agent_conn, {"action": "state"}),
        (agent_conn, {"action": "list", "include_closed": True}),
        (agent_conn, {"action": "pages", "conversation_id": cid}),
        (agent_conn, {"action": "sync", "conversation_id": cid, "after_seq": 0}),
        (agent_conn, {"action": "close", "conversation_id": cid}),
        (visitor_conn, {"action": "send", "conversation_id": cid, "client_msg_id": "m2", "text": "again"}),
        (agent_conn, {"action": "claim", "conversation_id": "conv_nope"}),
        (visitor_conn, "not json"),
    ]:
        seen.append(json.dumps(harness.frame(conn, frame)))
    for method, path, body, token in [
        ("GET", "/v1/conversations?include_closed=true", None, agent["token"]),
        ("GET", f"/v1/conversations/{cid}/messages", None, visitor["token"]),
        ("POST", "/v1/visitor/session", {"site_id": site.site_id, "user_id": "u1", "user_hash": "00"}, None),
        ("POST", "/v1/agent/session", {"site_id": site.site_id, "email": "x@y.z", "password": "wrong one"}, None),
    ]:
        seen.append(harness.rest(method, path, body, token=token).body.decode())
    seen += [json.dumps(frames) for frames in harness.mgmt.frames.values()]
    seen += [record.getMessage() for record in caplog.records
             if record.name.startswith("kefu") or record.levelno >= logging.INFO]
    everything = "\n".join(seen)
    assert site.secret not in everything
    assert settings().token_secret not in everything
