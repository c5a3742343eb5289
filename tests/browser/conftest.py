"""Browser tests: Debian's chromium driven by Playwright, against the real local stack."""
from __future__ import annotations

import hashlib
import hmac
import json
import pathlib
import re
import shutil
import struct
import time
import zlib
from typing import Any, Dict, List, Optional

import pytest

from tests.browser import store
from tests.e2e.stack import RunningStack

ROOT = pathlib.Path(__file__).resolve().parents[2]
SCREENSHOTS = ROOT / "test-output" / "screenshots"
README_SCREENSHOTS = ROOT / "docs" / "screenshots"
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


def start_stack(**env: str) -> RunningStack:
    """The local stack (per-address limits lifted: every browser here is 127.0.0.1; tests/e2e/stack.py)."""
    return RunningStack(env=env)


@pytest.fixture(scope="module")
def stack():
    running = start_stack()
    yield running
    running.stop()


def sockets_of(stack: Any) -> Any:
    """The stack's WebSocket URLs, for Playwright's route_web_socket."""
    return re.compile("^" + re.escape(stack.info["websocket_url"]) + r"\?")


@pytest.fixture
def shots():
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    return SCREENSHOTS


class WidgetPage:
    """One tab of the demo shop with the widget."""

    def __init__(self, visitor: "Visitor", page: Any) -> None:
        self.visitor = visitor
        self.page = page
        self.widget = page.locator("#kefu-widget")
        page.on("pageerror", lambda error: visitor.errors.append(str(error)))

    def open(self, query: str = "", wait_online: bool = True) -> "WidgetPage":
        self.page.goto(f"{self.visitor.base}/demo/?name={self.visitor.name}{query}")
        self.widget.locator("button.launcher").click()
        if wait_online:
            self.wait_online()
        return self

    def wait_online(self, timeout: float = 15000) -> None:
        self.page.locator('#kefu-widget[data-connection="online"]').wait_for(state="attached", timeout=timeout)

    def say(self, text: str) -> None:
        box = self.widget.locator("textarea")
        box.fill(text)
        box.press("Enter")

    def bubbles(self, side: str) -> Any:
        return self.widget.locator(f".msg.{side} .bubble")

    def session(self) -> Dict[str, Any]:
        return json.loads(self.page.evaluate("localStorage.getItem('kefu:demo')") or "{}")

    def conversation_id(self) -> str:
        return self.session()["conversationId"]


class Visitor(WidgetPage):
    """The demo shop with the widget, in its own browser context (its own storage and network)."""

    def __init__(self, browser: Any, stack: Any, name: str = "Vera", locale: str = "en-US",
                 init_script: Optional[str] = None, base: Optional[str] = None, query: str = "",
                 wait_online: bool = True) -> None:
        self.base = base or stack.base
        self.name = name
        self.errors: List[str] = []
        self.context = browser.new_context(locale=locale, viewport={"width": 1280, "height": 760})
        if init_script:
            self.context.add_init_script(init_script)
        super().__init__(self, self.context.new_page())
        self.open(query, wait_online=wait_online)

    def new_tab(self) -> WidgetPage:
        return WidgetPage(self, self.context.new_page()).open()


class Agent:
    def __init__(self, browser: Any, stack: Any, email: Optional[str] = None, password: Optional[str] = None,
                 init_script: Optional[str] = None) -> None:
        self.context = browser.new_context(viewport={"width": 1360, "height": 760})
        if init_script:
            self.context.add_init_script(init_script)
        self.page = self.context.new_page()
        self.errors: List[str] = []
        self.page.on("pageerror", lambda error: self.errors.append(str(error)))
        self.page.goto(f"{stack.base}/console/")
        form = self.page.locator("#login-form")
        form.locator("input[name=site_id]").fill(stack.info["site_id"])
        form.locator("input[name=email]").fill(email or stack.info["agent_email"])
        form.locator("input[name=password]").fill(password or stack.info["agent_password"])
        form.locator("button[type=submit]").click()
        self.page.locator("#connection.online").wait_for(timeout=15000)

    def open_conversation(self, visitor_name: str, tab: str = "all") -> None:
        self.page.locator(f'.tabs button[data-tab="{tab}"]').click()
        self.page.locator("#conversations li", has_text=visitor_name).first.click()
        self.page.locator("#visitor-name", has_text=visitor_name).wait_for()

    def say(self, text: str) -> None:
        self.page.locator("#text").fill(text)
        self.page.locator("#text").press("Enter")

    def bubbles(self, side: str) -> Any:
        return self.page.locator(f"#messages .msg.{side} .bubble")


# ---- what the server stored: the oracle the browser's view is checked against ------------------

def stored_messages(stack: Any, conversation_id: str) -> List[Dict[str, Any]]:
    """Every message of a conversation, read as an agent over REST."""
    token = stack.agent()["token"]
    found: List[Dict[str, Any]] = []
    after = 0
    while True:
        response = stack.rest("GET", f"/v1/conversations/{conversation_id}/messages", token=token,
                              params={"after_seq": after, "limit": 50})
        page = response.json()
        if response.status_code == 404 and page.get("code") == "conversation_not_found" and not found:
            return found  # reserved and nobody wrote in it: no item yet (docs/protocol.md), no messages
        found += page["messages"]
        if not page["has_more"]:
            return found
        after = page.get("next_after_seq") or page["messages"][-1]["seq"]


def stored_texts(stack: Any, conversation_id: str) -> List[str]:
    return [m["text"] for m in stored_messages(stack, conversation_id)]


def visitor_conversations(stack: Any, visitor_id: str) -> List[str]:
    token = stack.agent()["token"]
    listed = stack.rest("GET", "/v1/conversations", token=token, params={"include_closed": "true", "limit": 100}).json()
    return [c["conversation_id"] for c in listed["conversations"] if c["visitor_id"] == visitor_id]


def user_hash(stack: Any, user_id: str) -> str:
    secret = store.run(stack, "site_secret", site_id=stack.info["site_id"])
    return hmac.new(secret.encode(), user_id.encode(), hashlib.sha256).hexdigest()


def identity_token(stack: Any, user_id: str, ttl: int = 600) -> str:
    """What a site's server makes for its logged-in user on each page (docs/protocol.md)."""
    import jwt

    secret = store.run(stack, "site_secret", site_id=stack.info["site_id"])
    return jwt.encode({"sub": user_id, "exp": int(time.time()) + ttl}, secret, algorithm="HS256")


def eventually(check, timeout: float = 20.0, interval: float = 0.25, page: Any = None) -> Any:
    """Poll a server-side condition (the browser side has Playwright's expect). With ``page``, wait
    through Playwright, so that route handlers (which run only inside Playwright calls) keep running."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            value = check()
            if value:
                return value
        except AssertionError:
            if time.monotonic() > deadline:
                raise
        if time.monotonic() > deadline:
            raise AssertionError(f"not true within {timeout}s: {check}")
        if page is not None:
            page.wait_for_timeout(interval * 1000)
        else:
            time.sleep(interval)


def png(width: int = 40, height: int = 30, rgb: tuple = (200, 80, 40)) -> bytes:
    return _encode_png(width, height, b"".join(b"\x00" + bytes(rgb) * width for _ in range(height)))


def teapot_photo(width: int = 180, height: int = 120) -> bytes:
    """A warm gradient, for the README's screenshots."""
    rows = [b"\x00" + b"".join(bytes((min(255, 150 + x // 3), min(255, 80 + y // 2), 40 + (x + y) // 8))
                                for x in range(width)) for y in range(height)]
    return _encode_png(width, height, b"".join(rows))


def _encode_png(width: int, height: int, raw: bytes) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))
