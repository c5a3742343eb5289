"""Tokens and signed URLs expire while a tab stays open; nobody should notice. Links and images
in messages are shown as such, safely."""
from __future__ import annotations

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import Agent, Visitor, png, start_stack, stored_messages

pytestmark = pytest.mark.timeout(150)

TOKEN_TTL = 4
URL_TTL = 3


@pytest.fixture(scope="module")
def stack():
    running = start_stack(KEFU_VISITOR_TOKEN_TTL=str(TOKEN_TTL), KEFU_AGENT_TOKEN_TTL="6",
                          KEFU_DOWNLOAD_URL_TTL=str(URL_TTL))
    yield running
    running.stop()


LOADED = "img => img.complete && img.naturalWidth === 40"


def _attachments(stack, conversation_id):
    return [m["attachment"]["name"] for m in stored_messages(stack, conversation_id) if m.get("attachment")]


def test_upload_and_send_after_the_visitor_token_expired(browser, stack, tmp_path):
    picture = tmp_path / "receipt.png"
    picture.write_bytes(png())
    visitor = Visitor(browser, stack, name="Tess")
    conversation_id = visitor.conversation_id()
    first_token = visitor.session()["token"]
    visitor.page.wait_for_timeout((TOKEN_TTL + 2) * 1000)
    assert stack.rest("GET", f"/v1/conversations/{conversation_id}/messages",
                      token=first_token).json()["code"] == "token_expired"
    assert visitor.session()["token"] != first_token  # renewed before it expired

    visitor.widget.locator("input[type=file]").set_input_files(str(picture))
    expect(visitor.widget.locator('.msg.mine[data-state="sent"] img')).to_have_count(1, timeout=15000)
    visitor.say("sent long after the first token expired")
    expect(visitor.widget.locator('.msg.mine[data-state="sent"]')).to_have_count(2, timeout=15000)

    # A tab whose timers were asleep: the stored token is an expired one the widget believes is fresh.
    visitor.page.evaluate("""token => {
        const s = JSON.parse(localStorage.getItem('kefu:demo'));
        s.token = token; s.renewAt = Date.now() + 3600000;
        localStorage.setItem('kefu:demo', JSON.stringify(s));
    }""", first_token)
    visitor.widget.locator("input[type=file]").set_input_files(str(picture))  # the API says token_expired
    expect(visitor.widget.locator('.msg.mine[data-state="sent"] img')).to_have_count(2, timeout=15000)
    visitor.page.evaluate("""token => {
        const s = JSON.parse(localStorage.getItem('kefu:demo'));
        s.token = token; s.renewAt = Date.now() + 3600000;
        localStorage.setItem('kefu:demo', JSON.stringify(s));
    }""", first_token)
    visitor.context.set_offline(True)
    visitor.context.set_offline(False)  # the reconnect's handshake is refused: renew, then connect
    visitor.say("and after a reconnect")
    expect(visitor.widget.locator('.msg.mine[data-state="sent"]')).to_have_count(4, timeout=20000)
    expect(visitor.widget).to_have_attribute("data-transport", "ws")

    assert _attachments(stack, conversation_id) == ["receipt.png", "receipt.png"]
    texts = [m["text"] for m in stored_messages(stack, conversation_id) if m["text"]]
    assert texts == ["sent long after the first token expired", "and after a reconnect"]
    assert visitor.errors == []
    visitor.context.close()


def test_images_still_load_after_their_signed_urls_expired(browser, stack, tmp_path):
    picture = tmp_path / "teapot-crack.png"
    picture.write_bytes(png())
    agent = Agent(browser, stack)
    visitor = Visitor(browser, stack, name="Iris")
    visitor.widget.locator("input[type=file]").set_input_files(str(picture))
    own = visitor.widget.locator(".msg.mine img")
    expect(own).to_have_attribute("alt", "teapot-crack.png", timeout=15000)  # the sender sees the image itself
    own.evaluate(LOADED)
    agent.open_conversation("Iris")
    expect(agent.page.locator("#messages .msg.visitor img")).to_have_attribute("alt", "teapot-crack.png")
    agent.page.wait_for_function(f"() => ({LOADED})(document.querySelector('#messages .msg.visitor img'))")

    visitor.page.wait_for_timeout((URL_TTL + 2) * 1000)  # every signed URL handed out so far has expired
    visitor.page.reload()
    visitor.widget.locator("button.launcher").click()
    visitor.page.wait_for_function(
        f"() => {{ const i = document.querySelector('#kefu-widget').shadowRoot.querySelector('.msg.mine img');"
        f" return i && ({LOADED})(i); }}", timeout=15000)
    # A console opened now (a reload keeps no password to renew this module's 6 s agent token with).
    agent.context.close()
    agent = Agent(browser, stack)
    agent.open_conversation("Iris")
    agent.page.wait_for_function(
        f"() => {{ const i = document.querySelector('#messages .msg.visitor img'); return i && ({LOADED})(i); }}",
        timeout=15000)
    assert visitor.errors == [] and agent.errors == []
    visitor.context.close()
    agent.context.close()


def test_links_in_messages_are_clickable_and_nothing_else_is(browser, stack):
    agent = Agent(browser, stack)
    visitor = Visitor(browser, stack, name="Nils")
    visitor.say("is this the one? https://teapots.example/zisha?id=7.")
    agent.open_conversation("Nils")
    link = agent.page.locator("#messages .msg.visitor a")
    expect(link).to_have_attribute("href", "https://teapots.example/zisha?id=7")
    expect(link).to_have_attribute("rel", "noopener noreferrer")
    expect(link).to_have_attribute("target", "_blank")
    agent.say('Yes: https://teapots.example/zisha?id=7&from=chat (not javascript:alert(1) or <a href="x">this</a>)')
    theirs = visitor.widget.locator(".msg.theirs .bubble")
    expect(theirs).to_have_text('Yes: https://teapots.example/zisha?id=7&from=chat '
                                '(not javascript:alert(1) or <a href="x">this</a>)')
    links = theirs.locator("a")
    expect(links).to_have_count(1)
    expect(links).to_have_attribute("href", "https://teapots.example/zisha?id=7&from=chat")
    expect(links).to_have_attribute("rel", "noopener noreferrer")
    visitor.context.close()
    agent.context.close()


def test_the_console_renews_its_token_and_keeps_working(browser, stack, tmp_path):
    picture = tmp_path / "box.png"
    picture.write_bytes(png())
    agent = Agent(browser, stack)
    visitor = Visitor(browser, stack, name="Kai")
    visitor.say("hi")
    agent.open_conversation("Kai")
    first = agent.page.evaluate("JSON.parse(sessionStorage.getItem('kefu-console:session')).token")
    agent.page.wait_for_timeout(8000)  # the agent token lives 6 s here
    assert agent.page.evaluate("JSON.parse(sessionStorage.getItem('kefu-console:session')).token") != first
    agent.page.locator("#file").set_input_files(str(picture))
    expect(visitor.widget.locator(".msg.theirs img")).to_have_attribute("alt", "box.png", timeout=15000)
    agent.context.set_offline(True)
    agent.context.set_offline(False)
    expect(agent.page.locator("#connection.online")).to_be_visible(timeout=15000)
    agent.say("still here")
    expect(visitor.bubbles("theirs").last).to_have_text("still here")
    assert agent.errors == [] and visitor.errors == []
    visitor.context.close()
    agent.context.close()
