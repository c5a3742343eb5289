"""The product as people use it: a visitor on the demo shop and an agent in the console."""
from __future__ import annotations

import struct
import zlib

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import Agent, Visitor

pytestmark = pytest.mark.timeout(120)


def _png(width=40, height=30, rgb=(200, 80, 40)):
    raw = b"".join(b"\x00" + bytes(rgb) * width for _ in range(height))

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


def _stored_texts(stack, conversation_id):
    agent = stack.agent()
    page = stack.rest("GET", f"/v1/conversations/{conversation_id}/messages", token=agent["token"],
                      params={"after_seq": 0, "limit": 50}).json()
    return [m["text"] for m in page["messages"]]


def _conversation_id(visitor):
    return visitor.page.evaluate("JSON.parse(localStorage.getItem('kefu:demo')).conversationId")


def test_visitor_and_agent_chat_both_ways(browser, stack, shots):
    agent = Agent(browser, stack)
    visitor = Visitor(browser, stack, name="Vera")
    visitor.say("Hello, is the zisha teapot in stock?")
    agent.open_conversation("Vera")
    expect(agent.bubbles("visitor")).to_have_text(["Hello, is the zisha teapot in stock?"])
    agent.say("Yes! We have two left. 有货。")
    expect(visitor.bubbles("theirs")).to_have_text(["Yes! We have two left. 有货。"])
    expect(agent.page.locator("#details")).to_contain_text("/demo/")  # page-view tracking reached the agent
    expect(visitor.widget.locator(".msg.mine .meta").first).to_contain_text("Read", timeout=10000)
    visitor.page.screenshot(path=str(shots / "widget.png"))
    agent.page.screenshot(path=str(shots / "console.png"))
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
    assert _stored_texts(stack, _conversation_id(visitor)) == [
        "before the tunnel", "first while offline", "second while offline"]
    visitor.context.close()
    agent.context.close()


def test_unsent_messages_survive_a_reload(browser, stack):
    visitor = Visitor(browser, stack, name="Rita")
    conversation_id = _conversation_id(visitor)
    # A socket that swallows everything: the message is sent into the void and never acked.
    visitor.page.route_web_socket("**/dev?token=*", lambda ws: None)
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
    assert _stored_texts(stack, conversation_id) == ["typed before the reload"]
    visitor.context.close()


def test_visitor_uploads_an_image_and_the_agent_sees_it(browser, stack, shots, tmp_path):
    agent = Agent(browser, stack)
    visitor = Visitor(browser, stack, name="Iris")
    picture = tmp_path / "teapot-crack.png"
    picture.write_bytes(_png())
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


def test_widget_speaks_chinese_for_chinese_browsers(browser, stack):
    visitor = Visitor(browser, stack, name="Li", locale="zh-CN")
    expect(visitor.widget.locator("textarea")).to_have_attribute("placeholder", "输入消息…")
    visitor.context.close()


def test_widget_styles_do_not_leak_into_the_page(browser, stack):
    visitor = Visitor(browser, stack, name="Sam")
    # the host page's loud button/div styles do not reach the widget, and the widget's do not reach the page
    font = visitor.widget.locator("textarea").evaluate("e => getComputedStyle(e).fontSize")
    assert font == "14px"
    body_font = visitor.page.evaluate("getComputedStyle(document.querySelector('main p')).fontFamily")
    assert "Georgia" in body_font
    visitor.context.close()
