"""Browser tests: Debian's chromium driven by Playwright, against the real local stack."""
from __future__ import annotations

import pathlib
import shutil

import pytest

from tests.e2e.stack import RunningStack

ROOT = pathlib.Path(__file__).resolve().parents[2]
SCREENSHOTS = ROOT / "test-output" / "screenshots"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


@pytest.fixture(scope="module")  # Playwright's sync API holds an event loop open while it runs
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield launched
        launched.close()


@pytest.fixture(scope="module")
def stack():
    running = RunningStack(env={"KEFU_RATE_LIMIT": "1000"})
    yield running
    running.stop()


@pytest.fixture
def shots():
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    return SCREENSHOTS


class Visitor:
    """The demo shop with the widget, in its own browser context (its own storage and network)."""

    def __init__(self, browser, stack, name="Vera", locale="en-US"):
        self.context = browser.new_context(locale=locale, viewport={"width": 1280, "height": 760})
        self.page = self.context.new_page()
        self.errors = []
        self.page.on("pageerror", lambda error: self.errors.append(str(error)))
        self.page.goto(f"{stack.base}/demo/?name={name}")
        self.widget = self.page.locator("#kefu-widget")
        self.widget.locator("button.launcher").click()
        self.page.locator('#kefu-widget[data-connection="online"]').wait_for(state="attached", timeout=15000)

    def say(self, text):
        box = self.widget.locator("textarea")
        box.fill(text)
        box.press("Enter")

    def bubbles(self, side):
        return self.widget.locator(f".msg.{side} .bubble")


class Agent:
    def __init__(self, browser, stack):
        self.context = browser.new_context(viewport={"width": 1360, "height": 760})
        self.page = self.context.new_page()
        self.errors = []
        self.page.on("pageerror", lambda error: self.errors.append(str(error)))
        self.page.goto(f"{stack.base}/console/")
        form = self.page.locator("#login-form")
        form.locator("input[name=site_id]").fill(stack.info["site_id"])
        form.locator("input[name=email]").fill(stack.info["agent_email"])
        form.locator("input[name=password]").fill(stack.info["agent_password"])
        form.locator("button[type=submit]").click()
        self.page.locator("#connection.online").wait_for(timeout=15000)

    def open_conversation(self, visitor_name):
        self.page.locator("#conversations li", has_text=visitor_name).first.click()
        self.page.locator("#visitor-name", has_text=visitor_name).wait_for()

    def say(self, text):
        self.page.locator("#text").fill(text)
        self.page.locator("#text").press("Enter")

    def bubbles(self, side):
        return self.page.locator(f"#messages .msg.{side} .bubble")
