"""The product as people use it: a visitor on the demo shop and an agent in the console."""
from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import README_SCREENSHOTS, Agent, Visitor, png, sockets_of, stored_texts, teapot_photo
from tests.e2e.wsclient import ChatClient

pytestmark = pytest.mark.timeout(120)


def test_visitor_and_agent_chat_both_ways(browser, stack, shots, tmp_path):
    agent = Agent(browser, stack)
    visitor = Visitor(browser, stack, name="Vera")
    visitor.say("Hello, is the zisha teapot in stock?")
    agent.open_conversation("Vera")
    expect(agent.bubbles("visitor")).to_have_text(["Hello, is the zisha teapot in stock?"])
    agent.say("Yes! We have two left. 有货。 Details: https://teapots.example/zisha")
    expect(visitor.bubbles("theirs")).to_have_text(["Yes! We have two left. 有货。 Details: https://teapots.example/zisha"])
    expect(visitor.bubbles("theirs").locator("a")).to_have_attribute("href", "https://teapots.example/zisha")
    picture = tmp_path / "my-old-teapot.png"
    picture.write_bytes(teapot_photo())
    visitor.widget.locator("input[type=file]").set_input_files(str(picture))
    expect(agent.page.locator("#messages .msg.visitor img")).to_have_attribute("alt", "my-old-teapot.png")
    visitor.say("Is it the same size as this one?")
    expect(agent.bubbles("visitor").last).to_have_text("Is it the same size as this one?")
    expect(agent.page.locator("#details")).to_contain_text("/demo/")  # page-view tracking reached the agent
    expect(visitor.widget.locator('.msg.mine[data-state="read"]')).to_have_count(3, timeout=10000)
    expect(visitor.widget.locator(".msg.mine img")).to_have_attribute("alt", "my-old-teapot.png")
    visitor.page.wait_for_timeout(300)  # images painted
    # The README's screenshots (docs/screenshots/), and a copy with the test output.
    for folder in (shots, README_SCREENSHOTS):
        visitor.page.screenshot(path=str(folder / "widget.png"))
        agent.page.screenshot(path=str(folder / "console.png"))
    assert visitor.errors == [] and agent.errors == []
    visitor.context.close()
    agent.context.close()


def test_offline_visitor_messages_arrive_once_in_order(browser, stack, shots):
    agent = Agent(browser, stack)
    visitor = Visitor(browser, stack, name="Otto")
    visitor.say("before the tunnel")
    agent.open_conversation("Otto")
    expect(agent.bubbles("visitor")).to_have_text(["before the tunnel"])

    visitor.context.set_offline(True)
    expect(visitor.widget.locator(".notice.offline")).to_be_visible()
    visitor.say("first while offline")
    visitor.say("second while offline")
    expect(visitor.widget.locator('.msg[data-state="sending"]')).to_have_count(2)
    visitor.page.screenshot(path=str(shots / "widget-offline.png"))
    visitor.context.set_offline(False)

    expect(agent.bubbles("visitor")).to_have_text(
        ["before the tunnel", "first while offline", "second while offline"], timeout=20000)
    expect(visitor.widget.locator('.msg[data-state="sending"]')).to_have_count(0)
    assert stored_texts(stack, visitor.conversation_id()) == [
        "before the tunnel", "first while offline", "second while offline"]
    visitor.context.close()
    agent.context.close()


def test_unsent_messages_survive_a_reload(browser, stack):
    visitor = Visitor(browser, stack, name="Rita")
    conversation_id = visitor.conversation_id()
    # A socket that swallows everything: the message is sent into the void and never acked.
    visitor.page.route_web_socket(sockets_of(stack), lambda ws: None)
    visitor.page.reload()
    visitor.widget.locator("button.launcher").click()
    visitor.say("typed before the reload")
    expect(visitor.widget.locator('.msg[data-state="sending"]')).to_have_count(1)
    visitor.page.unroute_all()
    fresh = visitor.context.new_page()  # same storage, a real socket
    visitor.page.close()
    fresh.goto(f"{stack.base}/demo/?name=Rita")
    widget = fresh.locator("#kefu-widget")
    widget.locator("button.launcher").click()
    expect(widget.locator('.msg.mine[data-state="sent"] .bubble')).to_have_text(["typed before the reload"],
                                                                               timeout=20000)
    assert stored_texts(stack, conversation_id) == ["typed before the reload"]
    visitor.context.close()


def test_visitor_uploads_an_image_and_the_agent_sees_it(browser, stack, shots, tmp_path):
    agent = Agent(browser, stack)
    visitor = Visitor(browser, stack, name="Iris")
    picture = tmp_path / "teapot-crack.png"
    picture.write_bytes(png())
    visitor.widget.locator("input[type=file]").set_input_files(str(picture))
    agent.open_conversation("Iris")
    image = agent.page.locator("#messages .msg.visitor img")
    expect(image).to_have_attribute("alt", "teapot-crack.png", timeout=20000)
    agent.page.wait_for_function("() => { const i = document.querySelector('#messages .msg.visitor img');"
                                 " return i && i.complete && i.naturalWidth === 40; }", timeout=10000)
    agent.page.screenshot(path=str(shots / "console-image.png"))
    visitor.context.close()
    agent.context.close()


def test_script_sent_as_text_is_shown_as_text(browser, stack):
    agent = Agent(browser, stack)
    visitor = Visitor(browser, stack, name="Mallory")
    payload = '<script>window.__pwned = 1</script><img src=x onerror="window.__pwned = 2">'
    visitor.say(payload)
    agent.open_conversation("Mallory")
    expect(agent.bubbles("visitor")).to_have_text([payload])
    agent.say(payload)
    expect(visitor.bubbles("theirs")).to_have_text([payload])
    assert agent.page.evaluate("window.__pwned") is None
    assert visitor.page.evaluate("window.__pwned") is None
    assert agent.page.locator("#messages img").count() == 0
    visitor.context.close()
    agent.context.close()


def test_every_state_of_the_widget_speaks_the_visitors_language(browser, stack):
    visitor = Visitor(browser, stack, name="Li", locale="zh-CN")
    widget = visitor.widget

    def chrome():
        """Every word the widget itself shows (message bodies aside)."""
        return widget.evaluate("""host => [...host.shadowRoot.querySelectorAll(
            '.notice, .status, .meta, .typing, button, textarea, h2, [aria-label]')].map(e =>
            [e.matches('.meta, .notice, .status, .typing, h2') ? e.textContent : '',
             e.getAttribute('aria-label') || '', e.getAttribute('placeholder') || ''].join(' ')).join(' ')""")

    expect(widget.locator("textarea")).to_have_attribute("placeholder", "输入消息…")
    expect(widget.locator(".notice")).to_have_text("当前没有客服在线，请留言，我们会尽快回复。")
    assert not re.search("[A-Za-z]", chrome())
    visitor.page.evaluate("Kefu('send', 'x'.repeat(4001))")  # the server refuses it: text_too_long
    expect(widget.locator(".msg.failed .meta")).to_contain_text("发送失败：消息太长")
    expect(widget.locator(".msg.failed .meta button")).to_have_text("重试")
    visitor.context.set_offline(True)
    visitor.say("你好")
    expect(widget.locator(".notice")).to_have_text("网络已断开，恢复后会自动发送消息。")
    expect(widget.locator('.msg[data-state="sending"] .meta')).to_contain_text("发送中")
    assert not re.search("[A-Za-z]", chrome())
    visitor.context.set_offline(False)
    expect(widget.locator('.msg[data-state="sent"] .meta')).to_contain_text("已发送", timeout=15000)
    colleague = ChatClient(stack.ws_url(stack.agent()["token"]))
    colleague.request({"action": "close", "conversation_id": visitor.conversation_id()})
    colleague.close()
    expect(widget.locator(".notice")).to_have_text("本次会话已结束，发送消息即可继续咨询。")
    assert not re.search("[A-Za-z]", chrome())
    assert visitor.errors == []
    visitor.context.close()


def test_widget_styles_do_not_leak_into_the_page(browser, stack):
    visitor = Visitor(browser, stack, name="Sam")
    # the host page's loud button/div styles do not reach the widget, and the widget's do not reach the page
    font = visitor.widget.locator("textarea").evaluate("e => getComputedStyle(e).fontSize")
    assert font == "14px"
    body_font = visitor.page.evaluate("getComputedStyle(document.querySelector('main p')).fontFamily")
    assert "Georgia" in body_font
    visitor.context.close()
