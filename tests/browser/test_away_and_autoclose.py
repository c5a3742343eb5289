"""Agent status and auto-close on the real local stack: an away agent gets no new chat (a colleague
does, shown by name), and an idle chat closes itself, leaving the agent's Mine list."""
from __future__ import annotations

import pytest
from playwright.sync_api import expect

from tests.browser import store
from tests.browser.conftest import Agent, Visitor, start_stack

pytestmark = pytest.mark.timeout(150)

IDLE_SECONDS = 18


@pytest.fixture(scope="module")
def stack():
    running = start_stack(KEFU_AUTO_CLOSE_HOURS=str(IDLE_SECONDS / 3600), KEFU_SWEEP_INTERVAL="2")
    yield running
    running.stop()


def test_an_away_agent_gets_no_new_chat(browser, stack):
    store.run(stack, "create_agent", site_id=stack.info["site_id"], email="bo@demo.example",
              password="bo-password-1", name="Bo Chen")
    ann = Agent(browser, stack)
    bo = Agent(browser, stack, email="bo@demo.example", password="bo-password-1")
    ann.page.locator("#my-status").select_option("away")
    expect(bo.page.locator("#my-status")).to_have_value("online")
    ann.page.wait_for_timeout(1500)  # the functions' copy of the site item lasts KEFU_SITE_CACHE_SECONDS
    for name in ("Uma", "Vik"):
        Visitor(browser, stack, name=name).say("hello, anyone?")
        expect(bo.page.locator("#conversations li", has_text=name)).to_have_count(1)  # Bo's Mine
    expect(ann.page.locator("#conversations li")).to_have_count(0)  # Ann's Mine stays empty
    expect(ann.page.locator("#list-note")).to_contain_text("You are away")
    ann.open_conversation("Uma")
    expect(ann.page.locator("#visitor-status")).to_contain_text("assigned to Bo Chen")  # a name, not an id
    # back online, Ann can be handed chats again; Bo sees her in the transfer picker by name
    ann.page.locator("#my-status").select_option("online")
    bo.open_conversation("Vik", tab="mine")
    expect(bo.page.locator("#transfer-to option")).to_have_text(["Demo Agent"])
    assert not ann.errors and not bo.errors


def test_an_idle_chat_closes_itself_and_leaves_the_agents_list(browser, stack):
    agent = Agent(browser, stack)
    visitor = Visitor(browser, stack, name="Wen")
    visitor.say("I'll think about it")
    agent.open_conversation("Wen")
    agent.page.locator('.tabs button[data-tab="all"]').click()
    row = agent.page.locator("#conversations li", has_text="Wen")
    expect(row).to_have_count(1)
    expect(agent.page.locator("#conversation")).to_have_attribute("data-status", "closed", timeout=(IDLE_SECONDS + 20) * 1000)
    expect(agent.page.locator("#visitor-status")).to_contain_text("closed automatically")
    expect(row).to_have_count(0)  # no longer open: off the agent's load
    expect(visitor.widget.locator(".notice")).to_contain_text("ended")
    assert not agent.errors and not visitor.errors
