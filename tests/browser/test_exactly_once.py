"""Every message a visitor or an agent writes arrives exactly once, whatever happens meanwhile:
tabs, offline spells, a chat closed under the visitor, a change of identity, a skipped seq."""
from __future__ import annotations

import json
from collections import Counter

import pytest
from playwright.sync_api import expect

from tests.browser import store
from tests.browser.conftest import (Agent, Visitor, eventually, identity_token, sockets_of, start_stack,
                                    stored_messages, stored_texts, user_hash, visitor_conversations)
from tests.e2e.wsclient import ChatClient

pytestmark = pytest.mark.timeout(150)


@pytest.fixture(scope="module")
def stack():
    # A seq left empty this long is certainly dead: sync lists it as a gap (docs/protocol.md).
    running = start_stack(KEFU_SEQ_GAP_SECONDS="2")
    yield running
    running.stop()


def test_two_offline_tabs_each_queue_a_message_one_tab_closes_both_arrive_once(browser, stack):
    agent = Agent(browser, stack)
    first = Visitor(browser, stack, name="Tabitha")
    second = first.new_tab()
    conversation_id = first.conversation_id()
    assert second.conversation_id() == conversation_id  # one visitor, one session across tabs

    first.context.set_offline(True)
    first.say("typed in the first tab")
    second.say("typed in the second tab")
    # each tab shows both queued messages: the outbox is one, shared
    for tab in (first, second):
        expect(tab.widget.locator('.msg[data-state="sending"] .bubble')).to_have_text(
            ["typed in the first tab", "typed in the second tab"])
    first.page.close()
    first.context.set_offline(False)

    expect(second.widget.locator('.msg.mine[data-state="sent"] .bubble')).to_have_text(
        ["typed in the first tab", "typed in the second tab"], timeout=20000)
    assert sorted(stored_texts(stack, conversation_id)) == ["typed in the first tab", "typed in the second tab"]
    agent.open_conversation("Tabitha")
    expect(agent.bubbles("visitor")).to_have_text(["typed in the first tab", "typed in the second tab"])
    assert first.errors == [] and agent.errors == []
    first.context.close()
    agent.context.close()


def test_two_tabs_back_online_together_send_each_queued_message_once(browser, stack):
    first = Visitor(browser, stack, name="Gemma")
    second = first.new_tab()
    conversation_id = first.conversation_id()
    first.context.set_offline(True)
    for n in range(3):
        first.say(f"first tab {n}")
        second.say(f"second tab {n}")
    first.context.set_offline(False)  # both tabs reconnect and both try to send the shared outbox

    texts = [f"first tab {n}" for n in range(3)] + [f"second tab {n}" for n in range(3)]
    for tab in (first, second):
        expect(tab.widget.locator('.msg.mine[data-state="sent"]')).to_have_count(6, timeout=20000)
        expect(tab.widget.locator('.msg[data-state="sending"]')).to_have_count(0)
    stored = stored_texts(stack, conversation_id)
    assert sorted(stored) == sorted(texts)
    # in the order typed in each tab
    assert [t for t in stored if t.startswith("first")] == texts[:3]
    assert [t for t in stored if t.startswith("second")] == texts[3:]
    assert first.errors == []
    first.context.close()


def test_a_message_typed_after_the_agent_closed_the_chat_reaches_the_agent(browser, stack):
    agent = Agent(browser, stack)
    visitor = Visitor(browser, stack, name="Clara")
    visitor.say("my order has not arrived")
    agent.open_conversation("Clara")
    expect(agent.bubbles("visitor")).to_have_text(["my order has not arrived"])
    agent.page.locator("#close-conversation").click()
    expect(agent.page.locator("#visitor-status")).to_contain_text("closed")
    expect(visitor.widget.locator(".notice")).to_have_text("This chat has ended. Write a message to continue it.")

    visitor.say("sorry, one more question")
    expect(agent.bubbles("visitor")).to_have_text(["my order has not arrived", "sorry, one more question"],
                                                  timeout=15000)
    expect(visitor.bubbles("mine")).to_have_text(["my order has not arrived", "sorry, one more question"])
    expect(visitor.widget.locator('.msg[data-state="sending"]')).to_have_count(0)
    expect(visitor.widget.locator(".notice")).to_be_hidden()  # reopened: no longer "ended"
    visitor.page.reload()
    visitor.widget.locator("button.launcher").click()
    visitor.wait_online()
    expect(visitor.bubbles("mine")).to_have_text(["my order has not arrived", "sorry, one more question"])
    conversations = visitor_conversations(stack, visitor.session()["visitorId"])
    texts = [t for c in conversations for t in stored_texts(stack, c)]
    assert Counter(texts) == Counter(["my order has not arrived", "sorry, one more question"])
    assert visitor.errors == [] and agent.errors == []
    visitor.context.close()
    agent.context.close()


def test_messages_that_land_in_the_visitors_newer_conversation_take_the_widget_there(browser, stack):
    visitor = Visitor(browser, stack, name="Nora")
    visitor.say("first chat")
    expect(visitor.widget.locator('.msg.mine[data-state="sent"]')).to_have_count(1)
    old = visitor.conversation_id()
    colleague = ChatClient(stack.ws_url(stack.agent()["token"]))
    colleague.request({"action": "close", "conversation_id": old})
    colleague.close()
    expect(visitor.widget.locator(".notice")).to_have_text("This chat has ended. Write a message to continue it.")
    # the same visitor opens a new conversation elsewhere (another device): the widget does not know yet
    newer = stack.visitor(visitor_id=visitor.session()["visitorId"])["conversation_id"]
    assert newer != old
    visitor.context.set_offline(True)
    visitor.say("second thought")
    visitor.say("third thought")
    visitor.context.set_offline(False)

    # the first ack says where it landed: the widget follows, and the rest of the outbox with it
    expect(visitor.bubbles("mine")).to_have_text(["second thought", "third thought"], timeout=20000)
    expect(visitor.widget.locator('.msg[data-state="sending"]')).to_have_count(0)
    assert visitor.conversation_id() == newer
    assert stored_texts(stack, newer) == ["second thought", "third thought"]
    assert stored_texts(stack, old) == ["first chat"]
    assert visitor.errors == []
    visitor.context.close()


def test_identify_while_a_message_waits_offline_delivers_it(browser, stack):
    agent = Agent(browser, stack)
    visitor = Visitor(browser, stack, name="Ida")
    visitor.say("hello before logging in")
    anonymous = visitor.conversation_id()
    expect(visitor.widget.locator('.msg.mine[data-state="sent"]')).to_have_count(1)
    visitor.context.set_offline(True)
    visitor.say("written offline, then I logged in")
    expect(visitor.widget.locator('.msg[data-state="sending"]')).to_have_count(1)
    signature = user_hash(stack, "ida-1001")
    visitor.page.evaluate("([id, hash]) => Kefu('identify', {userId: id, userHash: hash, name: 'Ida Verified'})",
                          ["ida-1001", signature])
    visitor.context.set_offline(False)

    expect(visitor.widget.locator('.msg.mine[data-state="sent"] .bubble')).to_have_text(
        ["written offline, then I logged in"], timeout=20000)
    session = visitor.session()
    assert session["visitorId"] == "u_ida-1001" and session["conversationId"] != anonymous
    assert stored_texts(stack, session["conversationId"]) == ["written offline, then I logged in"]
    assert stored_texts(stack, anonymous) == ["hello before logging in"]
    agent.open_conversation("Ida Verified")
    expect(agent.bubbles("visitor")).to_have_text(["written offline, then I logged in"])
    assert visitor.errors == [] and agent.errors == []
    visitor.context.close()
    agent.context.close()


def test_identify_right_after_a_send_whose_ack_was_lost_stores_it_once(browser, stack):
    link = {"swallow": False}

    def relay(ws):
        server = ws.connect_to_server()
        ws.on_message(lambda message: server.send(message))
        server.on_message(lambda message: None if link["swallow"] else ws.send(message))

    visitor = Visitor(browser, stack, name="Ivo", wait_online=False)
    visitor.page.route_web_socket(sockets_of(stack), relay)
    visitor.page.reload()
    visitor.widget.locator("button.launcher").click()
    visitor.wait_online()
    visitor.say("hello")
    expect(visitor.widget.locator('.msg.mine[data-state="sent"]')).to_have_count(1)
    anonymous = visitor.conversation_id()
    link["swallow"] = True  # the server stores the next message, its ack never arrives
    visitor.say("sent just before logging in")
    eventually(lambda: stored_texts(stack, anonymous) == ["hello", "sent just before logging in"], page=visitor.page)
    signature = user_hash(stack, "ivo-5")
    visitor.page.evaluate("([id, hash]) => Kefu('identify', {userId: id, userHash: hash})", ["ivo-5", signature])
    link["swallow"] = False

    # the retry goes where the first attempt went, as the visitor who made it: found, not stored again
    eventually(lambda: visitor.page.evaluate(
        "Object.keys(localStorage).filter(k => k.startsWith('kefu:demo:o:'))") == [], page=visitor.page)
    visitor.wait_online()
    assert visitor.session()["visitorId"] == "u_ivo-5"
    assert stored_texts(stack, anonymous) == ["hello", "sent just before logging in"]
    assert stored_texts(stack, visitor.conversation_id()) == []
    assert visitor.errors == []
    visitor.context.close()


def test_reset_delivers_what_was_queued_as_the_visitor_who_wrote_it(browser, stack):
    visitor = Visitor(browser, stack, name="Rosa", query=f"&identity={identity_token(stack, 'rosa-7')}")
    assert visitor.session()["visitorId"] == "u_rosa-7"
    before = visitor.conversation_id()
    visitor.context.set_offline(True)
    visitor.say("please cancel order 7")
    visitor.page.evaluate("Kefu('reset')")  # the site logs the user out
    visitor.context.set_offline(False)

    eventually(lambda: stored_texts(stack, before) == ["please cancel order 7"])
    visitor.wait_online()
    after = visitor.session()
    assert after["visitorId"].startswith("v_") and after["conversationId"] != before
    # the next visitor on this browser sees nothing of the previous one
    expect(visitor.widget.locator(".msg")).to_have_count(0)
    assert stored_texts(stack, after["conversationId"]) == []
    # the queued message leaves the outbox once its ack arrives (it may trail the stored message)
    eventually(lambda: visitor.page.evaluate(
        "Object.keys(localStorage).filter(k => k.startsWith('kefu:demo:o:'))") == [])
    assert visitor.errors == []
    visitor.context.close()


def test_a_skipped_seq_then_60_agent_messages_the_widget_shows_them_all(browser, stack):
    visitor = Visitor(browser, stack, name="Sven")
    visitor.say("anyone there?")
    conversation_id = visitor.conversation_id()
    visitor.context.set_offline(True)
    skipped = store.run(stack, "skip_seq", conversation_id=conversation_id)
    assert skipped == 2
    agent = stack.agent()
    for n in range(60):
        sent = stack.rest("POST", f"/v1/conversations/{conversation_id}/messages", token=agent["token"],
                          json={"client_msg_id": f"bulk-{n}", "text": f"answer {n}"})
        assert sent.status_code == 200, sent.text
    visitor.context.set_offline(False)

    visitor.wait_online(timeout=20000)
    expect(visitor.bubbles("theirs")).to_have_count(60, timeout=20000)
    expect(visitor.bubbles("theirs")).to_have_text([f"answer {n}" for n in range(60)])
    seqs = visitor.widget.locator(".msg").evaluate_all("rows => rows.map(r => Number(r.dataset.seq))")
    assert seqs == [1] + list(range(3, 63))
    # once the gap is listed, the catch-up point moves past it: nothing is fetched again and again
    eventually(lambda: json.loads(visitor.page.evaluate("localStorage.getItem('kefu:demo:h')"))["s"] == 62,
               timeout=30)
    # and it stays usable: a new message goes through
    visitor.say("thanks, all 60 arrived")
    expect(visitor.widget.locator('.msg.mine[data-state="sent"]')).to_have_count(2, timeout=15000)
    assert [m["seq"] for m in stored_messages(stack, conversation_id)][-1] == 63
    assert visitor.errors == []
    visitor.context.close()


def test_connection_unknown_makes_the_widget_reconnect(browser, stack):
    sockets = []

    def relay(ws):
        server = ws.connect_to_server()
        sockets.append(ws)
        ws.on_message(lambda message: server.send(message))
        server.on_message(lambda message: ws.send(message))

    agent = Agent(browser, stack)
    visitor = Visitor(browser, stack, name="Uma", wait_online=False)
    visitor.page.route_web_socket(sockets_of(stack), relay)
    visitor.page.reload()
    visitor.widget.locator("button.launcher").click()
    visitor.wait_online()
    # (on a loaded machine a handshake that hangs past 10 s is given up and retried: the live
    # socket is the newest one)
    opened = len(sockets)
    assert opened >= 1
    # The server forgot this socket (swept, or a 410 while it was opening): it answers so, then closes it.
    sockets[-1].send(json.dumps({"type": "error", "code": "connection_unknown",
                                 "message": "this connection is not registered; reconnect"}))
    for _ in range(100):
        if len(sockets) > opened:
            break
        visitor.page.wait_for_timeout(100)  # Playwright runs the route handler meanwhile
    assert len(sockets) > opened, "the widget did not open a new socket"
    expect(visitor.widget).to_have_attribute("data-connection", "online", timeout=10000)
    visitor.say("after the reconnect")
    agent.open_conversation("Uma")
    expect(agent.bubbles("visitor")).to_have_text(["after the reconnect"])
    assert stored_texts(stack, visitor.conversation_id()) == ["after the reconnect"]
    visitor.context.close()
    agent.context.close()
