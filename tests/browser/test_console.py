"""The agent console stays true to the server: after reconnecting, with long conversations, with
holes in the seqs, and over a whole working day of tokens."""
from __future__ import annotations

import json

import pytest
from playwright.sync_api import expect

from tests.browser import store
from tests.browser.conftest import Agent, Visitor, sockets_of, start_stack
from tests.e2e.wsclient import ChatClient

pytestmark = pytest.mark.timeout(150)


@pytest.fixture(scope="module")
def stack():
    running = start_stack(KEFU_SEQ_GAP_SECONDS="3")
    yield running
    running.stop()


def _visitor_token(visitor):
    return visitor.session()["token"]


def _post_as_visitor(stack, visitor, texts):
    token, conversation_id = _visitor_token(visitor), visitor.conversation_id()
    for n, text in enumerate(texts):
        sent = stack.rest("POST", f"/v1/conversations/{conversation_id}/messages", token=token,
                          json={"client_msg_id": f"rest-{conversation_id}-{n}", "text": text})
        assert sent.status_code == 200, sent.text


def _shown_seqs(agent):
    return agent.page.locator("#messages .msg").evaluate_all("rows => rows.map(r => Number(r.dataset.seq))")


def test_after_reconnecting_a_chat_closed_meanwhile_shows_closed_and_another_has_every_message(browser, stack):
    agent = Agent(browser, stack)
    alma = Visitor(browser, stack, name="Alma")
    bruno = Visitor(browser, stack, name="Bruno")
    alma.say("is the celadon set dishwasher safe?")
    bruno.say("hello")
    bruno.say("I have a question about shipping")
    agent.open_conversation("Bruno")
    expect(agent.bubbles("visitor")).to_have_text(["hello", "I have a question about shipping"])
    agent.open_conversation("Alma")
    expect(agent.bubbles("visitor")).to_have_text(["is the celadon set dishwasher safe?"])

    agent.context.set_offline(True)
    expect(agent.page.locator("#connection")).not_to_have_class("pill online")
    colleague = ChatClient(stack.ws_url(stack.agent()["token"]))
    closed = colleague.request({"action": "close", "conversation_id": alma.conversation_id()})
    assert closed["conversation"]["status"] == "closed"
    colleague.close()
    _post_as_visitor(stack, bruno, [f"detail {n}" for n in range(40)])
    agent.context.set_offline(False)

    expect(agent.page.locator("#connection.online")).to_be_visible(timeout=20000)
    # the selected chat, closed by the colleague meanwhile, is shown closed
    expect(agent.page.locator("#conversation")).to_have_attribute("data-status", "closed")
    expect(agent.page.locator("#visitor-status")).to_contain_text("closed")
    expect(agent.page.locator("#close-conversation")).to_be_hidden()
    expect(agent.page.locator("#conversations li", has_text="Alma")).to_have_count(0)
    # the other one has every message, without asking
    agent.open_conversation("Bruno")
    expect(agent.bubbles("visitor")).to_have_count(42)
    expect(agent.bubbles("visitor")).to_have_text(
        ["hello", "I have a question about shipping"] + [f"detail {n}" for n in range(40)])
    assert _shown_seqs(agent) == list(range(1, 43))
    assert agent.errors == []
    for context in (agent.context, alma.context, bruno.context):
        context.close()


def test_a_long_conversation_offers_earlier_messages_and_shows_them_all(browser, stack):
    visitor = Visitor(browser, stack, name="Lena")
    visitor.say("first of many")
    expect(visitor.widget.locator('.msg.mine[data-state="sent"]')).to_have_count(1)
    _post_as_visitor(stack, visitor, [f"line {n}" for n in range(2, 46)])
    agent = Agent(browser, stack)
    agent.open_conversation("Lena")
    expect(agent.bubbles("visitor").last).to_have_text("line 45")
    earlier = agent.page.locator("#messages .load-earlier")
    expect(earlier).to_have_text("Load earlier messages (15)")
    assert _shown_seqs(agent) == list(range(16, 46))  # the newest 30
    earlier.click()
    expect(earlier).to_have_count(0)
    assert _shown_seqs(agent) == list(range(1, 46))
    expect(agent.bubbles("visitor").first).to_have_text("first of many")
    visitor.context.close()
    agent.context.close()


def test_a_missing_seq_is_shown_as_missing_until_the_server_lists_it_as_a_gap(browser, stack):
    agent = Agent(browser, stack)
    visitor = Visitor(browser, stack, name="Hugo")
    visitor.say("before the crash")
    agent.open_conversation("Hugo")
    expect(agent.bubbles("visitor")).to_have_text(["before the crash"])
    assert store.run(stack, "skip_seq", conversation_id=visitor.conversation_id()) == 2
    visitor.say("after the crash")
    expect(agent.bubbles("visitor")).to_have_text(["before the crash", "after the crash"])
    # seq 2 is neither shown nor silently skipped ...
    expect(agent.page.locator("#messages .missing")).to_have_text("1 message still loading…")
    # ... until, its writer certainly dead, the server lists it as a gap
    expect(agent.page.locator("#messages .missing")).to_have_count(0, timeout=20000)
    assert _shown_seqs(agent) == [1, 3]
    visitor.context.close()
    agent.context.close()


def test_selecting_a_conversation_shows_the_visitors_pages_from_the_pages_action(browser, stack):
    visitor = Visitor(browser, stack, name="Paula")
    for section in ("teapots", "tea", "about"):
        visitor.page.evaluate(f"history.pushState(null, '', '#{section}')")
        visitor.page.wait_for_timeout(300)
    visitor.say("which tea for a zisha pot?")
    agent_frames = []
    agent = Agent(browser, stack)
    agent.page.on("websocket", lambda ws: ws.on("framesent", lambda payload: agent_frames.append(payload)))
    agent.page.reload()
    agent.page.locator("#connection.online").wait_for()
    agent.open_conversation("Paula")
    pages = agent.page.locator("#details #pages li")
    expect(pages.first).to_contain_text("#about")
    urls = pages.evaluate_all("items => items.map(i => i.textContent)")
    assert [u.rsplit("#", 1)[-1] for u in urls[:3]] == ["about", "tea", "teapots"]
    sent = [json.loads(f) for f in agent_frames]
    assert {"action": "pages", "conversation_id": visitor.conversation_id()} in [
        {k: v for k, v in f.items() if k != "req"} for f in sent]
    visitor.context.close()
    agent.context.close()


def test_connection_unknown_makes_the_console_reconnect(browser, stack):
    sockets = []

    def relay(ws):
        server = ws.connect_to_server()
        sockets.append(ws)
        ws.on_message(lambda message: server.send(message))
        server.on_message(lambda message: ws.send(message))

    visitor = Visitor(browser, stack, name="Ulla")
    visitor.say("hello")
    agent = Agent(browser, stack)
    agent.page.route_web_socket(sockets_of(stack), relay)
    agent.page.reload()
    agent.page.locator("#connection.online").wait_for()
    agent.open_conversation("Ulla")
    sockets[0].send(json.dumps({"type": "error", "code": "connection_unknown",
                                "message": "this connection is not registered; reconnect"}))
    for _ in range(100):
        if len(sockets) == 2:
            break
        agent.page.wait_for_timeout(100)  # Playwright runs the route handler meanwhile
    assert len(sockets) == 2, "the console did not open a new socket"
    expect(agent.page.locator("#connection.online")).to_be_visible(timeout=10000)
    agent.say("back again")
    expect(visitor.bubbles("theirs")).to_have_text(["back again"])
    visitor.context.close()
    agent.context.close()


def test_the_console_lists_every_open_conversation_page_by_page(browser, stack):
    for n in range(60):  # more than one page of `state` (50)
        session = stack.visitor(name=f"Queued {n:02d}")
        sent = stack.rest("POST", f"/v1/conversations/{session['conversation_id']}/messages", token=session["token"],
                          json={"client_msg_id": "first", "text": "hello"})
        assert sent.status_code == 200, sent.text
    token = stack.agent()["token"]
    open_ids, cursor = [], None
    while True:
        params = {"limit": 100, **({"cursor": cursor} if cursor else {})}
        page = stack.rest("GET", "/v1/conversations", token=token, params=params).json()
        open_ids += [c["conversation_id"] for c in page["conversations"]]
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert len(open_ids) >= 60
    agent = Agent(browser, stack)
    expect(agent.page.locator("#count-all")).to_have_text(str(len(open_ids)))
    agent.page.locator('.tabs button[data-tab="all"]').click()
    expect(agent.page.locator("#conversations li", has_text="Queued 00")).to_have_count(1)
    expect(agent.page.locator("#conversations li", has_text="Queued 59")).to_have_count(1)
    agent.context.close()
