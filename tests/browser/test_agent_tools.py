"""The agents' tools in the browser, on the real local stack: a canned response inserted with "/",
an internal note that never reaches the visitor's widget, a rating given in the widget after close
that reaches the console and its report, unread badges, desktop notifications, and the console on
a phone (390 px)."""
from __future__ import annotations

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import README_SCREENSHOTS, Agent, Visitor, stored_messages

pytestmark = pytest.mark.timeout(150)


def test_a_canned_response_is_inserted_with_slash(browser, stack):
    agent = Agent(browser, stack)
    agent.page.locator("#open-canned").click()
    expect(agent.page.locator("#canned-list")).to_contain_text("No canned responses yet")
    agent.page.locator("#canned-shortcut").fill("shipping")
    agent.page.locator("#canned-text").fill("We ship within 2 working days.")
    agent.page.locator("#canned-form button[type=submit]").click()
    expect(agent.page.locator("#canned-list li[data-shortcut=shipping]")).to_be_visible()
    agent.page.locator("#canned-shortcut").fill("hello")
    agent.page.locator("#canned-text").fill("Hello! How can I help you today?")
    agent.page.locator("#canned-form button[type=submit]").click()
    expect(agent.page.locator("#canned-list li[data-shortcut]")).to_have_count(2)

    visitor = Visitor(browser, stack, name="Cora")
    visitor.say("hi there")
    agent.page.locator("#canned [data-back]").click()
    agent.open_conversation("Cora")
    box = agent.page.locator("#text")
    box.click()
    box.press_sequentially("/he")
    menu = agent.page.locator("#canned-menu")
    expect(menu).to_be_visible()
    expect(menu.locator("li")).to_have_count(1)
    expect(menu.locator("li").first).to_have_attribute("data-shortcut", "hello")
    box.press("Enter")  # inserts the response, and sends nothing yet
    expect(box).to_have_value("Hello! How can I help you today?")
    expect(menu).to_be_hidden()
    box.press("Enter")
    expect(visitor.bubbles("theirs")).to_have_text(["Hello! How can I help you today?"])
    assert not agent.errors and not visitor.errors, (agent.errors, visitor.errors)


def test_an_internal_note_never_reaches_the_visitors_widget(browser, stack):
    visitor = Visitor(browser, stack, name="Nadia")
    visitor.say("do you have it in green?")
    agent = Agent(browser, stack)
    agent.open_conversation("Nadia")
    agent.page.locator("#note").check()
    agent.say("Secret: the green one ships from the Hangzhou warehouse")
    note = agent.page.locator("#messages .msg.note")
    expect(note).to_have_count(1)
    expect(note.locator(".meta")).to_contain_text("Internal note")
    agent.page.locator("#note").uncheck()
    agent.say("Yes, we have it in green.")
    expect(visitor.bubbles("theirs")).to_have_text(["Yes, we have it in green."])
    expect(visitor.widget).not_to_contain_text("Hangzhou")
    # a reload syncs from scratch: still only the reply
    visitor.page.reload()
    visitor.widget.locator("button.launcher").click()
    visitor.wait_online()
    expect(visitor.bubbles("theirs")).to_have_text(["Yes, we have it in green."])
    expect(visitor.widget).not_to_contain_text("Hangzhou")
    # the note is stored, for agents
    stored = stored_messages(stack, visitor.conversation_id())
    assert [m.get("note") for m in stored] == [None, True, None]
    assert not agent.errors and not visitor.errors, (agent.errors, visitor.errors)


def test_a_rating_after_close_reaches_the_console_and_the_report(browser, stack):
    visitor = Visitor(browser, stack, name="Rosa")
    visitor.say("thanks for the help")
    agent = Agent(browser, stack)
    agent.open_conversation("Rosa")
    agent.say("You're welcome!")
    expect(visitor.bubbles("theirs")).to_have_count(1)
    rate = visitor.widget.locator(".rate")
    expect(rate).to_be_hidden()
    agent.page.locator("#close-conversation").click()
    expect(agent.page.locator("#visitor-status")).to_contain_text("closed by me")
    expect(rate).to_be_visible()
    rate.locator(".stars button[data-score='4']").click()
    rate.locator("input").fill("quick answer")
    rate.locator("button.go").click()
    expect(rate.locator(".thanks")).to_be_visible()
    expect(agent.page.locator("#visitor-status")).to_contain_text("rated ★★★★☆")
    expect(agent.page.locator("#details .rating")).to_contain_text("quick answer")
    agent.page.locator("#open-reports").click()
    ratings = agent.page.locator("#ratings-chart .big")
    expect(ratings).to_contain_text("/ 5")
    expect(agent.page.locator("#ratings-chart rect")).to_have_count(5)
    expect(agent.page.locator(".agents-table tbody tr").first).to_contain_text("Demo Agent")  # a name, not an id
    agent.page.locator("#report-agent").select_option(label="Demo Agent")  # one agent's charts
    expect(agent.page.locator("#report-body .chart h3").first).to_contain_text("handed to Demo Agent")
    expect(ratings).to_contain_text("/ 5")
    assert not agent.errors and not visitor.errors, (agent.errors, visitor.errors)


def test_unread_badges_count_per_conversation_and_in_the_title(browser, stack):
    agent = Agent(browser, stack)
    ivy = Visitor(browser, stack, name="Ivy")
    jun = Visitor(browser, stack, name="Jun")
    ivy.say("first question")
    jun.say("hello")
    agent.open_conversation("Ivy")
    beeps = int(agent.page.locator("body").get_attribute("data-beeps") or 0)
    jun.say("are you there?")
    jun.say("I need help with my order")
    row = agent.page.locator("#conversations li", has_text="Jun")
    expect(row.locator(".unread")).to_have_text("3")  # the tab is visible, another chat is selected
    expect(agent.page.locator("#conversations li", has_text="Ivy").locator(".unread")).to_have_count(0)
    # the title holds the total of the badges (chats left open by earlier tests included)
    badges = agent.page.locator("#conversations .unread")
    total = sum(int(n) for n in badges.all_inner_texts())
    assert total >= 3
    expect(agent.page).to_have_title(f"({total}) Kefu — agent console")
    assert int(agent.page.locator("body").get_attribute("data-beeps")) >= beeps + 2
    row.click()
    expect(row.locator(".unread")).to_have_count(0)
    expect(agent.page).to_have_title(f"({total - 3}) Kefu — agent console" if total > 3 else "Kefu — agent console")
    assert not agent.errors


def test_the_console_works_on_a_phone(browser, stack):
    visitor = Visitor(browser, stack, name="Pia")
    visitor.page.goto(f"{visitor.base}/demo/?name=Pia&p=" + "very-long-segment-" * 12)
    visitor.widget.locator("button.launcher").click()
    visitor.wait_online()
    visitor.say("Can I order this on my phone? " + "https://shop.example/products/" + "x" * 90)
    agent = Agent(browser, stack)
    page = agent.page
    page.set_viewport_size({"width": 390, "height": 844})
    expect(page.locator(".sidebar")).to_be_visible()
    expect(page.locator(".chat")).to_be_hidden()
    page.locator('.tabs button[data-tab="all"]').click()
    page.locator("#conversations li", has_text="Pia").first.click()
    expect(page.locator(".chat")).to_be_visible()
    expect(page.locator(".sidebar")).to_be_hidden()
    box = page.locator("#text").bounding_box()
    assert box["width"] >= 200 and box["height"] >= 36, box
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    page.locator("#show-details").click()
    expect(page.locator("#details")).to_be_visible()
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    assert page.evaluate("[...document.querySelectorAll('#details *')].every(e => e.getBoundingClientRect().right <= 391)")
    page.locator("#hide-details").click()
    expect(page.locator("#details")).to_be_hidden()
    agent.say("Yes, the shop works on phones too.")
    expect(visitor.bubbles("theirs")).to_have_text(["Yes, the shop works on phones too."])
    README_SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(README_SCREENSHOTS / "console-phone.png"))
    page.locator("#back").click()
    expect(page.locator(".sidebar")).to_be_visible()
    assert not agent.errors


FAKE_NOTIFICATIONS = """
window.__shown = [];
window.__hidden = false;
Object.defineProperty(Document.prototype, 'hidden', { get: function () { return window.__hidden; } });
function FakeNotification(title, options) { window.__shown.push({ title: title, body: options && options.body }); }
FakeNotification.permission = 'default';
FakeNotification.requestPermission = function () { FakeNotification.permission = 'granted'; return Promise.resolve('granted'); };
window.Notification = FakeNotification;
"""


def test_desktop_notifications_are_asked_for_on_a_click_and_shown_while_the_tab_is_hidden(browser, stack):
    """Chromium headless has no notification centre: the Notification API is a recording stand-in,
    and the tab's visibility is the page's document.hidden."""
    agent = Agent(browser, stack, init_script=FAKE_NOTIFICATIONS)
    offer = agent.page.locator("#enable-notifications")
    expect(offer).to_be_visible()
    offer.click()
    expect(offer).to_be_hidden()
    visitor = Visitor(browser, stack, name="Noor")
    visitor.say("visible tab: no desktop notification")
    expect(agent.page.locator("#conversations li", has_text="Noor")).to_have_count(1)
    assert agent.page.evaluate("window.__shown") == []
    agent.page.evaluate("window.__hidden = true")
    visitor.say("is anyone there?")
    agent.page.wait_for_function("window.__shown.length === 1")
    assert agent.page.evaluate("window.__shown") == [{"title": "Noor", "body": "is anyone there?"}]
    assert not agent.errors
