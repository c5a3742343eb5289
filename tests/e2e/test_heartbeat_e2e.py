"""The heartbeat sweep on the local stack: a half-dead client is dropped in seconds, a pinging one stays."""
from __future__ import annotations

import time

import pytest

from tests.e2e.stack import RunningStack
from tests.e2e.wsclient import ChatClient, closed_by_peer, half_open_socket

pytestmark = pytest.mark.timeout(90)

# The agent connects first and pings only once the visitors are set up: that setup includes the
# functions' first invocations in new execution environments (their lazy imports), several seconds
# on a loaded 2-core machine, so the timeout leaves room for it.
TIMEOUT_S = 4
SWEEP_S = 1


@pytest.fixture(scope="module")
def stack():
    running = RunningStack(env={"KEFU_HEARTBEAT_TIMEOUT": str(TIMEOUT_S), "KEFU_SWEEP_INTERVAL": str(SWEEP_S)})
    yield running
    running.stop()


def test_silent_client_is_swept_and_agent_told_while_pinging_client_stays(stack):
    assert stack.info["heartbeat_timeout"] == TIMEOUT_S and stack.info["sweep_interval"] == SWEEP_S
    agent = stack.agent()
    agent_ws = ChatClient(stack.ws_url(agent["token"]))
    silent = stack.visitor(name="Silent")
    wrote = stack.rest("POST", f"/v1/conversations/{silent['conversation_id']}/messages", token=silent["token"],
                       json={"client_msg_id": "hi", "text": "hi"})  # agents follow visitors who wrote
    assert wrote.status_code == 200
    lively = stack.visitor(name="Lively")
    lively_ws = ChatClient(stack.ws_url(lively["token"]), origin=stack.base)
    dead_socket = half_open_socket(stack.ws_url(silent["token"]), origin=stack.base)
    agent_ws.wait_type("presence", status="online", id=silent["visitor_id"])

    started = time.monotonic()
    window = TIMEOUT_S + 2 * SWEEP_S + 3  # timeout, up to two sweep periods, slack for a loaded CI box
    offline = None
    while time.monotonic() - started < window:
        lively_ws.request({"action": "ping"})
        agent_ws.request({"action": "ping"})
        try:
            offline = agent_ws.wait_type("presence", timeout=0.4, status="offline", id=silent["visitor_id"])
            break
        except AssertionError:
            continue
    assert offline is not None, "the agent was not told the silent visitor went offline in time"
    assert offline["conversation_id"] == silent["conversation_id"]
    assert closed_by_peer(dead_socket, timeout=5), "the silent socket was not closed"

    # the pinging visitor is still connected and served
    for _ in range(4 * TIMEOUT_S):
        assert lively_ws.request({"action": "ping"})["type"] == "pong"
        assert agent_ws.request({"action": "ping"})["type"] == "pong"
        time.sleep(0.5)
    ack = lively_ws.request({"action": "send", "conversation_id": lively["conversation_id"],
                             "client_msg_id": "still-here", "text": "still here"})
    assert ack["type"] == "ack"
    assert not any(f.get("type") == "presence" and f.get("id") == lively["visitor_id"] and f.get("status") == "offline"
                   for f in agent_ws.drain())
