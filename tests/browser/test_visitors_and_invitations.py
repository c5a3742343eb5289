"""Live visitors and proactive chat in Chromium, on the real local stack: an agent sees a visitor
browse the demo shop without writing (no conversation), invites them and the widget opens with the
message; the visitor leaves and is gone from the list; an owner's automatic invitation fires once
per visit."""
from __future__ import annotations

from typing import Any

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import Agent
from tests.browser.test_admin import Owner

pytestmark = pytest.mark.timeout(150)


class Browsing:
    """A visitor on the demo shop who never opens the widget."""

    def __init__(self, browser: Any, stack: Any, name: str, path: str = "/demo/") -> None:
        self.context = browser.new_context(locale="en-US", viewport={"width": 1280, "height": 760})
        self.page = self.context.new_page()
        self.errors = []
        self.page.on("pageerror", lambda error: self.errors.append(str(error)))
        self.widget = self.page.locator("#kefu-widget")
        self.page.goto(f"{stack.base}{path}?name={name}")
        self.page.locator('#kefu-widget[data-connection="online"]').wait_for(state="attached", timeout=15000)


def test_an_agent_sees_a_visitor_browse_live_and_invites_them(browser, stack, shots):
    agent = Agent(browser, stack)
    agent.page.locator('.tabs button[data-tab="visitors"]').click()
    listed = agent.page.locator("#conversations li.visitor")
    conversations_before = agent.page.locator("#count-all").text_content()

    visitor = Browsing(browser, stack, "Wendy")
    wendy = listed.filter(has_text="Wendy")
    expect(wendy).to_have_count(1, timeout=15000)  # pushed as she arrives
    expect(wendy.locator(".page")).to_contain_text("Teapot & Co.")
    expect(wendy.locator(".tag")).to_have_text("new")
    # browsing opened no conversation
    assert agent.page.locator("#count-all").text_content() == conversations_before
    expect(visitor.widget.locator(".panel")).to_be_hidden()

    wendy.locator("input").fill("Hi Wendy! Can I help you choose a teapot?")
    agent.page.screenshot(path=str(shots / "console-visitors.png"))
    wendy.locator("button.invite").click()

    # the widget opens with the agent's message
    expect(visitor.widget.locator(".panel")).to_be_visible(timeout=15000)
    expect(visitor.widget.locator(".msg.theirs .bubble").last).to_have_text("Hi Wendy! Can I help you choose a teapot?")
    # the console shows the conversation, the agent's own
    expect(agent.page.locator('.tabs button[data-tab="mine"]')).to_have_class("active")
    expect(agent.page.locator("#visitor-name")).to_have_text("Wendy")
    expect(agent.bubbles("agent")).to_have_count(1)

    box = visitor.widget.locator("textarea")
    box.fill("Yes, a small one please")
    box.press("Enter")
    expect(agent.bubbles("visitor")).to_have_text(["Yes, a small one please"], timeout=15000)

    # she leaves: gone from the live list
    agent.page.locator('.tabs button[data-tab="visitors"]').click()
    expect(wendy).to_have_count(1)
    visitor.context.close()
    expect(wendy).to_have_count(0, timeout=20000)
    assert not visitor.errors and not agent.errors, (visitor.errors, agent.errors)
    agent.context.close()


def test_an_automatic_invitation_opens_the_widget_once_per_visit(browser, stack):
    owner = Owner(browser, stack)
    form = owner.page.locator("#widget-form")
    form.locator("textarea[name=auto_invitations]").fill("1 | */demo/* | Looking for something special?")
    form.locator("button[type=submit]").click()
    expect(owner.page.locator("body")).to_contain_text("Saved.")
    owner.context.close()

    visitor = Browsing(browser, stack, "Otto")
    expect(visitor.widget.locator(".panel")).to_be_visible(timeout=10000)
    expect(visitor.widget.locator(".msg.invitation .bubble")).to_have_text("Looking for something special?")
    # the same visit, another page load: not again
    visitor.page.reload()
    visitor.page.locator('#kefu-widget[data-connection="online"]').wait_for(state="attached", timeout=15000)
    visitor.page.wait_for_timeout(2500)
    expect(visitor.widget.locator(".panel")).to_be_hidden()
    expect(visitor.widget.locator(".msg.invitation")).to_have_count(0)
    assert not visitor.errors, visitor.errors
    visitor.context.close()

    # the owner clears them (other tests share this stack)
    owner = Owner(browser, stack)
    owner.page.locator("#widget-form textarea[name=auto_invitations]").fill("")
    owner.page.locator("#widget-form button[type=submit]").click()
    expect(owner.page.locator("body")).to_contain_text("Saved.")
    owner.context.close()
