"""The site owner's admin page, and what it changes for visitors, agents and email (Chromium)."""
from __future__ import annotations

import re
import time
from typing import Any, Dict, List

import pytest
import requests
from playwright.sync_api import expect

from tests.browser.conftest import README_SCREENSHOTS, Agent, Visitor, start_stack

pytestmark = pytest.mark.timeout(180)


@pytest.fixture
def stack():
    """A stack of its own per test: these tests change the demo site's settings and agents."""
    running = start_stack(KEFU_MAIL_INTERVAL="1", KEFU_MAIL_REPLY_DELAY="1")
    yield running
    running.stop()


class Owner:
    def __init__(self, browser: Any, stack: Any, locale: str = "en-US") -> None:
        self.context = browser.new_context(locale=locale, viewport={"width": 1440, "height": 900})
        self.page = self.context.new_page()
        self.errors: List[str] = []
        self.page.on("pageerror", lambda error: self.errors.append(str(error)))
        self.page.goto(f"{stack.base}/admin/")
        form = self.page.locator("#login-form")
        form.locator("input[name=site_id]").fill(stack.info["site_id"])
        form.locator("input[name=email]").fill(stack.info["agent_email"])
        form.locator("input[name=password]").fill(stack.info["agent_password"])
        form.locator("button[type=submit]").click()
        expect(self.page.locator("#site-name")).to_contain_text(stack.info["site_id"])
        self.preview = self.page.frame_locator("#preview").locator("#kefu-widget")

    def tab(self, name: str) -> None:
        self.page.locator(f'.tabs button[data-tab="{name}"]').click()


def mails(stack: Any) -> List[Dict[str, Any]]:
    return requests.get(stack.info["mail_url"], timeout=5).json()["mails"]


def wait_for_mail(stack: Any, to: str, timeout: float = 30) -> Dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = [m for m in mails(stack) if to in m["to"]]
        if found:
            return found[-1]
        time.sleep(0.5)
    raise AssertionError(f"no mail to {to}: {mails(stack)}")


def test_owner_changes_colour_greeting_and_pre_chat_form_and_a_fresh_page_shows_them(browser, stack, shots):
    owner = Owner(browser, stack)
    form = owner.page.locator("#widget-form")
    form.locator("input[name=color]").fill("#0f766e")
    form.locator("textarea[name=greeting]").fill("Welcome to Teapot & Co.! Ask us anything about tea.")
    form.locator("input[name=team_name]").fill("Teapot team")
    form.locator("input[name=expected_reply_minutes]").fill("10")
    form.locator("select[name=pre_email]").select_option("required")
    # the live preview is the real widget, following the form as it is typed
    expect(owner.preview.locator(".greeting .bubble")).to_have_text("Welcome to Teapot & Co.! Ask us anything about tea.")
    expect(owner.preview.locator('.ask[data-form="prechat"] input[name=email]')).to_be_visible()
    expect(owner.preview.locator("header")).to_have_css("background-color", "rgb(15, 118, 110)")
    expect(owner.preview.locator("header h2")).to_have_text("Teapot team")
    form.locator("button[type=submit]").click()
    expect(owner.page.locator("#notice")).to_have_text("Saved.")
    owner.page.evaluate("window.scrollTo(0, 0)")
    for folder in (shots, README_SCREENSHOTS):
        owner.page.screenshot(path=str(folder / "admin.png"))

    # a bad greeting is refused with its reason, and nothing changes
    form.locator("textarea[name=greeting]").evaluate("(e) => { e.removeAttribute('maxlength'); e.value = 'x'.repeat(301); }")
    form.locator("button[type=submit]").click()
    expect(owner.page.locator("#widget-error")).to_have_text("The greeting is limited to 300 characters.")

    demo_agent = stack.agent()
    avatar = "https://cdn.teapots.example/agents/demo.png"
    assert stack.rest("PATCH", f"/v1/admin/agents/{demo_agent['agent_id']}", token=demo_agent["token"],
                      json={"avatar_url": avatar}).status_code == 200
    agent = Agent(browser, stack)  # someone is online: the pre-chat form, not the leave-a-message one
    expect(agent.page.locator("#admin-link")).to_be_visible()  # the demo agent is an owner
    visitor = Visitor(browser, stack, name="Nina")
    widget = visitor.widget
    expect(widget.locator("button.launcher")).to_have_css("background-color", "rgb(15, 118, 110)")
    expect(widget.locator(".greeting .bubble")).to_have_text("Welcome to Teapot & Co.! Ask us anything about tea.")
    expect(widget.locator("header h2")).to_have_text("Teapot team")
    expect(widget.locator("header .reply")).to_have_text("Usually replies in 10 minutes")
    email = widget.locator('.ask[data-form="prechat"] input[name=email]')
    expect(email).to_be_visible()
    visitor.say("Do you sell matcha bowls?")
    expect(widget.locator(".ask .error")).to_have_text("Please fill in the required fields.")
    expect(widget.locator(".msg.mine")).to_have_count(0)  # not sent without the required email
    email.fill("nina@mail.example")
    widget.locator("textarea").press("Enter")
    expect(widget.locator(".msg.mine .bubble")).to_have_text(["Do you sell matcha bowls?"])
    expect(widget.locator(".ask")).to_be_hidden()
    agent.open_conversation("Nina")
    expect(agent.page.locator("#details")).to_contain_text("nina@mail.example")
    agent.say("Yes, in three glazes.")
    reply = widget.locator(".msg.theirs:not(.greeting)")
    expect(reply.locator(".bubble")).to_have_text(["Yes, in three glazes."])
    expect(reply.locator(".meta")).to_contain_text("Demo Agent")  # the agent's name, not just "Agent"
    expect(reply.locator(".meta img.avatar")).to_have_attribute("src", avatar)
    assert visitor.errors == [] and owner.errors == [] and agent.errors == []
    for context in (visitor.context, owner.context, agent.context):
        context.close()


def test_owner_disables_an_agent_and_that_agent_is_logged_out(browser, stack, shots):
    owner = Owner(browser, stack, locale="zh-CN")
    expect(owner.page.locator('.tabs button[data-tab="agents"]')).to_have_text("客服")  # the page speaks Chinese
    owner.tab("agents")
    add = owner.page.locator("#agent-form")
    add.locator("input[name=name]").fill("Cathy")
    add.locator("input[name=email]").fill("cathy@demo.kefu")
    add.locator("input[name=password]").fill("cathy-password")
    add.locator("button[type=submit]").click()
    row = owner.page.locator('tr[data-agent="cathy@demo.kefu"]')
    expect(row.locator(".state")).to_have_text("正常")

    cathy = Agent(browser, stack, email="cathy@demo.kefu", password="cathy-password")
    expect(cathy.page.locator("#admin-link")).to_be_hidden()  # an agent, not an owner
    expect(row.locator(".state")).to_contain_text("在线", timeout=15000)
    for folder in (shots, README_SCREENSHOTS):
        owner.page.screenshot(path=str(folder / "admin-agents.png"))
    row.locator('button[data-action="disable"]').click()
    expect(row.locator(".state")).to_have_text("已停用")
    expect(cathy.page.locator("#login")).to_be_visible(timeout=30000)  # logged out
    form = cathy.page.locator("#login-form")
    form.locator("input[name=password]").fill("cathy-password")
    form.locator("button[type=submit]").click()
    expect(cathy.page.locator("#login-error")).not_to_be_empty()  # and cannot log in again

    # an agent is no owner: the admin page refuses them
    row.locator('button[data-action="enable"]').click()
    expect(row.locator(".state")).to_have_text("正常")
    page = owner.context.browser.new_context().new_page()
    page.goto(f"{stack.base}/admin/")
    page.locator("#login-form input[name=site_id]").fill(stack.info["site_id"])
    page.locator("#login-form input[name=email]").fill("cathy@demo.kefu")
    page.locator("#login-form input[name=password]").fill("cathy-password")
    page.locator("#login-form button[type=submit]").click()
    expect(page.locator("#login-error")).to_have_text(re.compile("owners|管理员"))
    expect(page.locator("#app")).to_be_hidden()

    # identity verification: the secret shown on request, rotated after a confirmation
    owner.tab("identity")
    expect(owner.page.locator("#jwt-sample")).to_contain_text("identityToken")
    owner.page.locator("#reveal").click()
    expect(owner.page.locator("#secret")).to_have_text(re.compile("^[0-9a-f]{64}$"))
    first = owner.page.locator("#secret").text_content()
    assert first in owner.page.locator("#hash-sample").text_content()
    owner.page.once("dialog", lambda dialog: dialog.accept())
    owner.page.locator("#rotate").click()
    expect(owner.page.locator("#secret")).not_to_have_text(first)
    # the embed snippet, copied
    owner.tab("install")
    expect(owner.page.locator("#snippet")).to_contain_text("siteId: 'demo'")
    expect(owner.page.locator("#snippet")).to_contain_text(f"{stack.base}/widget.js")
    owner.page.locator("#copy").click()
    expect(owner.page.locator("#copied")).to_have_text("已复制。")
    assert owner.errors == []
    page.context.close()
    owner.context.close()
    cathy.context.close()


def test_a_message_left_offline_is_emailed_answered_and_the_reply_email_leads_back(browser, stack, shots):
    visitor = Visitor(browser, stack, name="Otto", locale="zh-CN")
    ask = visitor.widget.locator('.ask[data-form="offline"]')
    expect(ask).to_be_visible()
    expect(ask.locator("h3")).to_have_text("给我们留言")
    ask.locator("input[name=email]").fill("otto@mail.example")
    visitor.say("请问紫砂壶可以刻字吗？")
    expect(visitor.widget.locator(".msg.mine .bubble")).to_have_text(["请问紫砂壶可以刻字吗？"])
    expect(visitor.widget.locator(".notice")).to_contain_text("otto@mail.example")
    visitor.page.screenshot(path=str(shots / "widget-left-message.png"))
    visitor.context.close()  # the visitor leaves

    alert = wait_for_mail(stack, stack.info["agent_email"])
    assert "请问紫砂壶可以刻字吗？" in alert["text"] and "otto@mail.example" in alert["text"]

    agent = Agent(browser, stack)  # logs in later
    agent.open_conversation("Otto")
    expect(agent.bubbles("visitor")).to_have_text(["请问紫砂壶可以刻字吗？"])
    agent.say("可以的，最多八个字。")
    reply = wait_for_mail(stack, "otto@mail.example")
    assert "可以的，最多八个字。" in reply["text"]
    link = re.search(r"https?://\S+#kefu-resume=\S+", reply["text"]).group(0)
    assert link.startswith(f"{stack.base}/demo/")

    # another browser altogether: the link alone brings Otto back into the chat
    elsewhere = browser.new_context(locale="zh-CN", viewport={"width": 1280, "height": 760})
    page = elsewhere.new_page()
    page.goto(link)
    widget = page.locator("#kefu-widget")
    expect(widget.locator(".panel")).to_be_visible()
    expect(widget.locator(".msg.theirs .bubble")).to_have_text(["可以的，最多八个字。"], timeout=15000)
    expect(widget.locator(".msg.mine .bubble")).to_have_text(["请问紫砂壶可以刻字吗？"])
    assert "kefu-resume" not in page.url  # the token does not stay in the address bar
    box = widget.locator("textarea")
    box.fill("太好了，谢谢！")
    box.press("Enter")
    expect(agent.bubbles("visitor")).to_have_text(["请问紫砂壶可以刻字吗？", "太好了，谢谢！"])
    page.screenshot(path=str(shots / "widget-back-from-email.png"))

    # and asks for the conversation by email: it comes when the agent closes it
    widget.locator("button.mail").click()
    transcript = widget.locator('.ask[data-form="transcript"]')
    expect(transcript.locator("input[name=email]")).to_have_value("otto@mail.example")
    transcript.locator("button[type=submit]").click()
    expect(widget.locator(".notice")).to_contain_text("会话结束后")
    agent.page.locator("#close-conversation").click()
    deadline = time.monotonic() + 30
    while not [m for m in mails(stack) if m["to"] == ["otto@mail.example"] and "对话记录" in m["subject"]]:
        assert time.monotonic() < deadline, mails(stack)
        time.sleep(0.5)
    [record] = [m for m in mails(stack) if "对话记录" in m["subject"]]
    assert "请问紫砂壶可以刻字吗？" in record["text"] and "太好了，谢谢！" in record["text"]
    assert agent.errors == []
    elsewhere.close()
    agent.context.close()


def test_away_the_widget_hides_or_offers_the_form_outside_business_hours(browser, stack):
    from datetime import datetime, timezone

    owner = stack.agent()  # the demo agent is the demo site's owner

    def settings(widget):
        response = stack.rest("PATCH", "/v1/admin/site", token=owner["token"], json={"widget": widget})
        assert response.status_code == 200, response.text

    settings({"offline": "hide"})
    context = browser.new_context(viewport={"width": 1280, "height": 760})
    page = context.new_page()
    page.goto(f"{stack.base}/demo/?name=Hana")
    page.locator('#kefu-widget[data-connection="online"]').wait_for(state="attached", timeout=15000)
    launcher = page.locator("#kefu-widget button.launcher")
    expect(launcher).to_be_hidden()  # nobody online: no chat offered
    agent = Agent(browser, stack)
    expect(launcher).to_be_visible(timeout=30000)  # someone came online: it is back
    context.close()

    now = datetime.now(timezone.utc)
    closed_hour = (now.hour + 3) % 24
    settings({"offline": "form", "business_hours": {"enabled": True, "time_zone": "UTC", "days": {
        day: [[f"{closed_hour:02d}:00", f"{closed_hour:02d}:30"]] for day in ("mon", "tue", "wed", "thu", "fri", "sat", "sun")}}})
    visitor = Visitor(browser, stack, name="Ivo")  # an agent is online, but it is outside business hours
    expect(visitor.widget.locator('.ask[data-form="offline"]')).to_be_visible()
    expect(visitor.widget.locator(".notice")).to_have_text("We are away right now: leave a message and we will reply by email.")
    assert visitor.errors == [] and agent.errors == []
    visitor.context.close()
    agent.context.close()
