"""How the widget reaches the server: a WebSocket when it can, REST polling when it cannot, a clear
word when the site refuses it, and the agents' presence as it changes."""
from __future__ import annotations

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import Agent, Visitor, eventually, sockets_of, stored_texts

pytestmark = pytest.mark.timeout(150)


def test_without_websocket_the_chat_works_both_ways_over_rest(browser, stack):
    agent = Agent(browser, stack)
    visitor = Visitor(browser, stack, name="Walter", init_script="delete window.WebSocket")
    expect(visitor.widget).to_have_attribute("data-transport", "rest")
    visitor.say("my browser is very old")
    agent.open_conversation("Walter")
    expect(agent.bubbles("visitor")).to_have_text(["my browser is very old"])
    agent.say("no problem, we can still talk")
    expect(visitor.bubbles("theirs")).to_have_text(["no problem, we can still talk"], timeout=10000)

    # offline and back: the same outbox, each message once
    visitor.context.set_offline(True)
    visitor.say("typed offline")
    visitor.context.set_offline(False)
    expect(agent.bubbles("visitor")).to_have_text(["my browser is very old", "typed offline"], timeout=15000)
    expect(visitor.widget.locator('.msg[data-state="sending"]')).to_have_count(0)
    assert stored_texts(stack, visitor.conversation_id()) == [
        "my browser is very old", "no problem, we can still talk", "typed offline"]
    assert visitor.errors == [] and agent.errors == []
    visitor.context.close()
    agent.context.close()


def test_over_rest_the_visitor_still_types_reads_hears_the_close_and_rates(browser, stack):
    agent = Agent(browser, stack)
    visitor = Visitor(browser, stack, name="Rita", init_script="delete window.WebSocket")
    expect(visitor.widget).to_have_attribute("data-transport", "rest")
    visitor.say("我的订单还没有发货，能帮我查一下吗？")
    agent.open_conversation("Rita")
    # typing reaches the agent without a socket (typed over 4 s: a typing post goes at most every 3 s)
    visitor.widget.locator("textarea").press_sequentially("还有一个问题，请问", delay=500)
    expect(agent.page.locator("#typing")).to_have_text("Visitor is typing…", timeout=10000)
    # the agent's reply is read by the open chat: the console shows it read, the widget shows the agent read
    agent.say("已经发货了，明天送到。")
    expect(visitor.bubbles("theirs")).to_have_text(["已经发货了，明天送到。"], timeout=10000)
    expect(agent.page.locator("#messages .msg.agent .meta")).to_contain_text("read", timeout=10000)
    expect(visitor.widget.locator('.msg.mine[data-state="read"]')).to_have_count(1, timeout=10000)
    # the agent closes the chat: the poller hears it and asks for a rating, which reaches the console
    rate = visitor.widget.locator(".rate")
    expect(rate).to_be_hidden()
    agent.page.locator("#close-conversation").click()
    expect(visitor.widget.locator(".notice")).to_have_text("This chat has ended. Write a message to continue it.",
                                                           timeout=15000)
    expect(rate).to_be_visible()
    rate.locator(".stars button[data-score='5']").click()
    rate.locator("button.go").click()
    expect(rate.locator(".thanks")).to_be_visible()
    expect(agent.page.locator("#visitor-status")).to_contain_text("rated ★★★★★")
    assert visitor.errors == [] and agent.errors == []
    visitor.context.close()
    agent.context.close()


def test_polling_is_frequent_while_the_chat_is_open_and_rare_while_it_is_closed(browser, stack):
    visitor = Visitor(browser, stack, name="Polly", init_script="delete window.WebSocket")
    polls = []
    visitor.page.on("request", lambda r: polls.append(r) if "/messages?after_seq=" in r.url else None)
    # Open, an idle chat is asked every 1.5 s, backing off to at most 7.5 s: at least 2 in 16 s, however
    # long the page took to load (on a busy CI machine the backoff had reached 7.5 s before this began).
    visitor.page.wait_for_timeout(16000)
    open_polls = len(polls)
    visitor.widget.locator("header button").click()  # the visitor closes the chat panel
    visitor.page.wait_for_timeout(3000)  # (a poll already scheduled may still come)
    polls.clear()
    visitor.page.wait_for_timeout(9000)
    assert open_polls >= 2 and len(polls) <= 1, (open_polls, len(polls))
    visitor.context.close()


def test_when_sockets_keep_failing_it_polls_and_goes_back_to_a_socket_once_one_works(browser, stack):
    proxy = {"kills": True}  # a proxy that kills every socket, until it does not
    visitor = Visitor(browser, stack, name="Petra", wait_online=False)
    visitor.page.route_web_socket(sockets_of(stack),
                                  lambda ws: ws.close() if proxy["kills"] else ws.connect_to_server())
    visitor.page.reload()
    visitor.widget.locator("button.launcher").click()
    expect(visitor.widget).to_have_attribute("data-transport", "rest", timeout=15000)
    visitor.wait_online()
    visitor.say("sent while sockets fail")
    expect(visitor.widget.locator('.msg.mine[data-state="sent"]')).to_have_count(1, timeout=10000)

    proxy["kills"] = False
    expect(visitor.widget).to_have_attribute("data-transport", "ws", timeout=30000)
    visitor.wait_online()
    visitor.say("and now over a socket")
    expect(visitor.widget.locator('.msg.mine[data-state="sent"]')).to_have_count(2, timeout=10000)
    assert stored_texts(stack, visitor.conversation_id()) == ["sent while sockets fail", "and now over a socket"]
    visitor.context.close()


@pytest.mark.parametrize("locale, message", [
    ("en-US", "Chat is not available on this website."),
    ("zh-CN", "此网站暂未开通在线客服。"),
])
def test_a_refused_origin_is_said_once_in_the_visitors_language(browser, stack, locale, message):
    sessions = []
    # localhost is not among the demo site's allowed origins (127.0.0.1 is)
    other_origin = stack.base.replace("127.0.0.1", "localhost")
    visitor = Visitor(browser, stack, name="Olaf", locale=locale, base=other_origin, wait_online=False)
    visitor.page.on("request", lambda r: sessions.append(r) if "/v1/visitor/session" in r.url else None)
    visitor.page.reload()
    visitor.widget.locator("button.launcher").click()
    expect(visitor.widget).to_have_attribute("data-connection", "refused")
    expect(visitor.widget.locator(".notice")).to_have_text(message)
    visitor.context.set_offline(True)
    visitor.context.set_offline(False)
    visitor.page.wait_for_timeout(4000)
    assert len(sessions) == 1  # no retry storm
    visitor.context.close()


def test_a_visitor_who_left_a_message_sees_the_first_agent_come_online(browser, stack):
    visitor = Visitor(browser, stack, name="Eva")
    notice = visitor.widget.locator(".notice")
    expect(notice).to_have_text("No agent is online: leave a message and we will reply as soon as we can.")
    visitor.say("please call me back about order 12")
    agent = Agent(browser, stack)
    expect(notice).to_be_hidden(timeout=10000)
    expect(visitor.widget.locator(".status")).to_have_text("We are online")
    agent.context.close()
    visitor.context.close()


def test_a_visitor_looking_at_the_chat_sees_the_first_agent_come_online(browser, stack):
    # The earlier tests' agents have left: their $disconnect may still be on its way.
    eventually(lambda: not stack.visitor(name="probe")["agents_online"])
    visitor = Visitor(browser, stack, name="Finn")
    notice = visitor.widget.locator(".notice")
    expect(notice).to_have_text("No agent is online: leave a message and we will reply as soon as we can.")
    agent = Agent(browser, stack)
    expect(notice).to_be_hidden(timeout=10000)  # pushed: the widget's own poll is 15 s apart
    expect(visitor.widget.locator(".status")).to_have_text("We are online")
    agent.context.close()  # the site's last agent leaves: the widget hears it (no poll runs meanwhile)
    expect(notice).to_have_text("No agent is online: leave a message and we will reply as soon as we can.",
                                timeout=10000)
    visitor.context.close()
