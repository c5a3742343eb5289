"""End-to-end: the real local stack's stream stand-in (local/streams.py) indexes what the chat
functions write, in worker processes of their own, through the indexer function's own
environments, so an agent's search finds a visitor's message."""
from __future__ import annotations

import re
import time

import pytest

from tests.e2e.stack import RunningStack
from tests.e2e.wsclient import ChatClient

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def stack():
    running = RunningStack()
    yield running
    running.stop()


def _search_until_found(agent_ws: ChatClient, query: str, timeout: float = 15.0) -> dict:
    """Indexing follows the stream (the source's batching window, a second): ask until found."""
    deadline = time.monotonic() + timeout
    while True:
        answer = agent_ws.request({"action": "search", "query": query})
        assert answer["type"] == "search_results", answer
        if answer["results"] or time.monotonic() > deadline:
            return answer
        time.sleep(0.3)


def test_a_visitors_websocket_message_is_found_by_an_agents_search(stack):
    agent = stack.agent()
    agent_ws = ChatClient(stack.ws_url(agent["token"]))
    visitor = stack.visitor(name="Mei")
    visitor_ws = ChatClient(stack.ws_url(visitor["token"]), origin=stack.base)
    cid = visitor["conversation_id"]
    try:
        ack = visitor_ws.request({"action": "send", "conversation_id": cid, "client_msg_id": "v1",
                                  "text": "这个紫砂茶壶有货吗"})
        assert ack["type"] == "ack"
        found = _search_until_found(agent_ws, "茶壶")["results"]
        assert [(r["conversation_id"], r["seq"]) for r in found] == [(cid, ack["seq"])]
        assert agent_ws.request({"action": "search", "query": "茶杯"})["results"] == []
    finally:
        agent_ws.close()
        visitor_ws.close()
    # The indexer ran as a function of its own, invoked with the stream's records.
    lines = [line for line in stack.lines if re.search(r"IndexMessages\s+stream \(\d+ records\)", line)]
    assert lines and "status=ok" in lines[0], stack.log_text()[-3000:]
