"""Chaos: real widget pages whose network is cut at random, whose sockets die mid-send or swallow
the server's answers, and which reload, while visitors and an agent keep writing. Afterwards the
server holds every message exactly once, and every page shows exactly what the server holds."""
from __future__ import annotations

import json
import random
import time
from collections import Counter

import pytest

from tests.browser.conftest import eventually, sockets_of, stored_messages

pytestmark = pytest.mark.timeout(170)

CHAOS_SECONDS = 25
SEED = random.randrange(1 << 30)


class Link:
    """A context's WebSockets pass through here, so chaos can cut them, or let the server's frames
    (acks, pushes) vanish while the page's frames still arrive."""

    def __init__(self, context, sockets):
        self.pairs = []
        self.swallow = False
        context.route_web_socket(sockets, self.route)

    def route(self, ws):
        server = ws.connect_to_server()
        self.pairs.append((ws, server))
        ws.on_message(lambda message: server.send(message))
        server.on_message(lambda message: None if self.swallow else ws.send(message))

    def cut(self):
        pairs, self.pairs = self.pairs, []
        for ws, server in pairs:
            for side in (ws, server):
                try:
                    side.close()
                except Exception:
                    pass  # closed already


class Person:
    def __init__(self, browser, stack, name, tabs, websocket=True):
        self.name = name
        self.context = browser.new_context(locale="en-US", viewport={"width": 1000, "height": 700})
        if websocket:
            self.link = Link(self.context, sockets_of(stack))
        else:
            self.context.add_init_script("delete window.WebSocket")
            self.link = None
        self.url = f"{stack.base}/demo/?name={name}"
        self.pages = []
        self.errors = []
        self.typed = {}  # tab -> texts in the order typed
        self.offline = False
        for n in range(tabs):
            page = self.context.new_page()
            page.on("pageerror", lambda error: self.errors.append(str(error)))
            page.goto(self.url)
            page.locator('#kefu-widget[data-connection="online"]').wait_for(state="attached", timeout=20000)
            self.pages.append(page)
            self.typed[n] = []
        self.conversation_id = self.session()["conversationId"]

    def session(self):
        return json.loads(self.pages[0].evaluate("localStorage.getItem('kefu:demo')"))

    def type(self, tab, text):
        self.pages[tab].evaluate("text => Kefu('send', text)", text)
        self.typed[tab].append(text)

    def set_offline(self, offline):
        self.offline = offline
        self.context.set_offline(offline)

    def outbox(self):
        return self.pages[0].evaluate("Object.keys(localStorage).filter(k => k.startsWith('kefu:demo:o:'))")

    def shown(self, tab):
        return self.pages[tab].locator("#kefu-widget .msg").evaluate_all(
            "rows => rows.map(r => [r.dataset.seq, r.dataset.state, r.querySelector('.bubble').textContent])")


def test_random_network_failures_lose_nothing_and_duplicate_nothing(browser, stack):
    rng = random.Random(SEED)
    people = [Person(browser, stack, "Chaos-A", tabs=2), Person(browser, stack, "Chaos-B", tabs=1),
              Person(browser, stack, "Chaos-C", tabs=1, websocket=False)]
    agent_token = stack.agent()["token"]
    agent_sent = {p.name: [] for p in people}
    counter = 0
    restore = []  # (time, action) to undo a fault
    started = time.monotonic()
    while time.monotonic() - started < CHAOS_SECONDS:
        person = rng.choice(people)
        roll = rng.random()
        if roll < 0.40:
            tab = rng.randrange(len(person.pages))
            counter += 1
            person.type(tab, f"{person.name} tab {tab} #{counter}")
        elif roll < 0.55:
            counter += 1
            text = f"agent to {person.name} #{counter}"
            def agent_sends():
                return stack.rest("POST", f"/v1/conversations/{person.conversation_id}/messages",
                                  token=agent_token, json={"client_msg_id": f"agent-{counter}", "text": text})

            sent = agent_sends()
            if sent.status_code == 404:
                if not stored_messages(stack, person.conversation_id):
                    continue  # nobody wrote in it yet: agents cannot see it (a reserved conversation has no item)
                sent = agent_sends()  # the visitor's first message created it meanwhile
            assert sent.status_code == 200, sent.text
            agent_sent[person.name].append(text)
        elif roll < 0.68 and not person.offline:
            person.set_offline(True)
            restore.append((time.monotonic() + rng.uniform(0.3, 3), lambda p=person: p.set_offline(False)))
        elif roll < 0.80 and person.link:
            person.link.cut()  # sockets die mid-whatever
        elif roll < 0.90 and person.link and not person.link.swallow:
            person.link.swallow = True  # acks and pushes vanish; then the socket dies
            restore.append((time.monotonic() + rng.uniform(0.3, 2), lambda p=person: (
                p.link.cut(), setattr(p.link, "swallow", False))))
        elif roll < 0.95 and not person.offline:  # (offline, the shop's page itself would not load)
            tab = rng.randrange(len(person.pages))
            person.pages[tab].reload()
        due = [r for r in restore if r[0] <= time.monotonic()]
        for item in due:
            restore.remove(item)
            item[1]()
        people[0].pages[0].wait_for_timeout(rng.uniform(100, 400))
    for _, undo in restore:
        undo()
    for person in people:
        person.set_offline(False)
        if person.link:
            person.link.swallow = False

    for person in people:
        eventually(lambda: person.outbox() == [], timeout=40, page=person.pages[0])
        stored = stored_messages(stack, person.conversation_id)
        texts = [m["text"] for m in stored]
        typed = [t for tab in person.typed.values() for t in tab]
        context = f"seed {SEED}, {person.name}"
        assert Counter(t for t in texts if not t.startswith("agent")) == Counter(typed), context
        assert Counter(t for t in texts if t.startswith("agent")) == Counter(agent_sent[person.name]), context
        for tab, in_order in person.typed.items():  # one outbox, sent oldest first: the order typed
            assert [t for t in texts if t in set(in_order)] == in_order, context
        expected = [[str(m["seq"]), m["text"]] for m in stored]
        for tab in range(len(person.pages)):
            eventually(lambda: [[seq, text] for seq, _, text in person.shown(tab)] == expected, timeout=30,
                       page=person.pages[tab])
            assert not [row for row in person.shown(tab) if row[1] in ("sending", "failed")], context
        assert person.errors == [], context
    for person in people:
        person.context.close()
