"""History and search in the console, on the real local stack (its stream stand-in indexes messages
as DynamoDB Streams would): a closed conversation is listed in History and opened read-only, and
found by a Chinese word inside a sentence and by an English word, opened at the message."""
from __future__ import annotations

import time

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import Agent, Visitor

pytestmark = pytest.mark.timeout(150)

SENTENCE = "这个紫砂茶壶有货吗"


def _search_until_found(agent, query, timeout=20.0):
    """Indexing follows the stream (about a second behind): search again until a result shows."""
    box = agent.page.locator("#search")
    results = agent.page.locator("#conversations li.result")
    deadline = time.monotonic() + timeout
    while True:
        box.fill(query)
        box.press("Enter")
        expect(agent.page.locator("#list-note", has_text="Searching")).to_be_hidden()
        if results.count() or time.monotonic() > deadline:
            return results
        agent.page.wait_for_timeout(500)


def test_a_closed_conversation_is_in_history_and_found_by_chinese_and_english_words(browser, stack, shots):
    visitor = Visitor(browser, stack, name="Mei")
    visitor.say("你好")
    visitor.say(SENTENCE)
    visitor.say("Also, do you have the teapots in blue?")
    agent = Agent(browser, stack)
    agent.open_conversation("Mei")
    expect(agent.bubbles("visitor")).to_have_count(3)
    agent.say("有的，蓝色的也有。")
    expect(agent.bubbles("agent")).to_have_count(1)
    agent.page.locator("#close-conversation").click()
    expect(agent.page.locator("#conversation")).to_have_attribute("data-status", "closed")

    # History: listed, opened read-only with a clear closed state
    agent.page.locator('.tabs button[data-tab="history"]').click()
    row = agent.page.locator("#conversations li", has_text="Mei")
    expect(row).to_have_count(1)
    expect(row.locator(".tag.closed")).to_have_text("closed")
    agent.page.locator('.tabs button[data-tab="all"]').click()
    expect(agent.page.locator("#conversations li", has_text="Mei")).to_have_count(0)  # not open any more
    agent.page.locator('.tabs button[data-tab="history"]').click()
    agent.page.locator("#conversations li", has_text="Mei").click()
    expect(agent.page.locator("#visitor-name")).to_have_text("Mei")
    expect(agent.page.locator("#conversation")).to_have_attribute("data-status", "closed")
    expect(agent.page.locator("#closed-note")).to_be_visible()
    expect(agent.page.locator("#composer")).to_be_hidden()
    expect(agent.page.locator("#close-conversation")).to_be_hidden()
    expect(agent.page.locator("#claim")).to_be_hidden()
    expect(agent.bubbles("visitor")).to_have_text(["你好", SENTENCE, "Also, do you have the teapots in blue?"])

    # Search: a Chinese word inside a sentence, opened at that message
    results = _search_until_found(agent, "茶壶")
    expect(results).to_have_count(1)
    expect(results.first).to_contain_text("Mei")
    expect(results.first.locator(".snippet")).to_have_text(SENTENCE)
    expect(results.first.locator(".tag.closed")).to_be_visible()
    agent.page.locator('.tabs button[data-tab="mine"]').click()  # elsewhere first, then open the hit
    agent.page.locator("#search").fill("茶壶")
    agent.page.locator("#search").press("Enter")
    agent.page.locator("#conversations li.result").first.click()
    hit = agent.page.locator("#messages .msg.hit")
    expect(hit).to_have_count(1)
    expect(hit).to_have_attribute("data-seq", "2")
    expect(hit.locator(".bubble")).to_have_text(SENTENCE)
    expect(hit).to_be_in_viewport()
    expect(agent.page.locator("#conversation")).to_have_attribute("data-status", "closed")
    agent.page.screenshot(path=str(shots / "console-search.png"))

    # an English word, plural in the message, singular in the query
    results = _search_until_found(agent, "Teapot")
    expect(results).to_have_count(1)
    expect(results.first.locator(".snippet")).to_contain_text("teapots in blue")
    results.first.click()
    expect(agent.page.locator("#messages .msg.hit .bubble")).to_have_text("Also, do you have the teapots in blue?")

    # nothing found says so; an empty search goes back to the lists
    agent.page.locator("#search").fill("茶杯")
    agent.page.locator("#search").press("Enter")
    expect(agent.page.locator("#list-note")).to_contain_text("Nothing found")
    expect(agent.page.locator("#conversations li.result")).to_have_count(0)
    agent.page.locator("#search").fill("")
    agent.page.locator("#search").press("Enter")
    expect(agent.page.locator('.tabs button[data-tab="mine"]')).to_have_class("active")

    # the visitor writes again: the conversation reopens as before, and leaves History
    visitor.say("还有一个问题")
    agent.page.locator('.tabs button[data-tab="history"]').click()
    expect(agent.page.locator("#conversations li", has_text="Mei")).to_have_count(0)
    assert agent.errors == [] and visitor.errors == []
    for context in (agent.context, visitor.context):
        context.close()
