"""Live visitors (the `visitors` action and `visitor` pushes) and proactive chat (`invite`)."""
from __future__ import annotations



def _browse(harness, site_id, url="https://shop.example/teapots", **fields):
    visitor = harness.visitor(site_id, **fields)
    conn, status = harness.connect(visitor["token"], origin="https://shop.example")
    assert status == 200
    assert harness.reply(conn, {"action": "page_view", "url": url, "title": "Teapots",
                                "referrer": "https://search.example/?q=tea"})["type"] == "page_view_ok"
    return visitor, conn


def test_agents_see_browsing_visitors_without_a_conversation(harness):
    site = harness.site()
    agent = harness.agent(site.site_id)
    agent_conn, _ = harness.connect(agent["token"])
    visitor, _ = _browse(harness, site.site_id, name="Vic", attributes={"plan": "pro"})
    harness.reply(_browse(harness, site.site_id, url="https://shop.example/cups")[1],
                  {"action": "page_view", "url": "https://shop.example/cups/2", "title": "Cups 2"})

    listed = harness.reply(agent_conn, {"action": "visitors", "req": "v1"})
    assert listed["type"] == "visitors" and listed["req"] == "v1" and listed["next_cursor"] is None
    by_id = {v["visitor_id"]: v for v in listed["visitors"]}
    assert len(by_id) == 2
    vic = by_id[visitor["visitor_id"]]
    assert vic["url"] == "https://shop.example/teapots" and vic["title"] == "Teapots"
    assert vic["name"] == "Vic" and vic["attributes"] == {"plan": "pro"} and vic["online"] is True
    assert vic["pages_this_visit"] == 1 and vic["referrer"] == "https://search.example/?q=tea"
    assert vic["returning"] is False and vic["time_on_site"] >= 0
    other = [v for v in by_id.values() if v["visitor_id"] != visitor["visitor_id"]][0]
    assert other["url"] == "https://shop.example/cups/2" and other["pages_this_visit"] == 2
    # browsing opened no conversation for agents
    assert harness.reply(agent_conn, {"action": "list"})["conversations"] == []


def test_pushes_as_visitors_arrive_move_and_leave(harness):
    site = harness.site()
    agent = harness.agent(site.site_id)
    agent_conn, _ = harness.connect(agent["token"])
    visitor = harness.visitor(site.site_id)
    conn, _ = harness.connect(visitor["token"])
    second_tab, _ = harness.connect(visitor["token"])
    events = [(f["event"], f["visitor_id"]) for f in harness.mgmt.of_type(agent_conn, "visitor")]
    assert events == [("arrived", visitor["visitor_id"])]  # once, not once per tab
    harness.reply(conn, {"action": "page_view", "url": "https://shop.example/a"})
    moved = harness.mgmt.of_type(agent_conn, "visitor")[-1]
    assert moved["event"] == "moved" and moved["visitor"]["url"] == "https://shop.example/a"
    harness.disconnect(conn)
    assert harness.mgmt.of_type(agent_conn, "visitor")[-1]["event"] == "moved"  # one tab still open
    assert len(harness.reply(agent_conn, {"action": "visitors"})["visitors"]) == 1
    harness.disconnect(second_tab)
    left = harness.mgmt.of_type(agent_conn, "visitor")[-1]
    assert left["event"] == "left" and left["visitor"] == {"visitor_id": visitor["visitor_id"], "online": False}
    assert harness.reply(agent_conn, {"action": "visitors"})["visitors"] == []


def test_visitors_are_paged_and_each_listed_once(harness):
    site = harness.site()
    agent = harness.agent(site.site_id)
    agent_conn, _ = harness.connect(agent["token"])
    expected = set()
    for _ in range(5):
        visitor, _ = _browse(harness, site.site_id)
        harness.connect(visitor["token"])  # a second tab: still one visitor
        expected.add(visitor["visitor_id"])
    seen, cursor, pages = [], None, 0
    while True:
        frame = {"action": "visitors", "limit": 2, **({"cursor": cursor} if cursor else {})}
        reply = harness.reply(agent_conn, frame)
        assert len(reply["visitors"]) <= 2
        seen += [v["visitor_id"] for v in reply["visitors"]]
        pages += 1
        cursor = reply["next_cursor"]
        if cursor is None:
            break
    assert sorted(seen) == sorted(expected) and pages == 3
    assert harness.reply(agent_conn, {"action": "visitors", "cursor": "nope"})["code"] == "invalid_cursor"
    assert harness.reply(agent_conn, {"action": "visitors", "limit": 0})["code"] == "invalid_limit"


def test_sites_are_isolated_and_visitors_cannot_list(harness):
    site, other_site = harness.site(), harness.site()
    _browse(harness, site.site_id)
    outsider = harness.agent(other_site.site_id, email="bob@other.example")
    outsider_conn, _ = harness.connect(outsider["token"])
    assert harness.reply(outsider_conn, {"action": "visitors"})["visitors"] == []
    assert harness.mgmt.of_type(outsider_conn, "visitor") == []
    _, visitor_conn = _browse(harness, site.site_id)
    refused = harness.reply(visitor_conn, {"action": "visitors"})
    assert refused["type"] == "error" and refused["code"] == "agents_only"
    refused = harness.reply(visitor_conn, {"action": "invite", "visitor_id": "x", "text": "hi"})
    assert refused["code"] == "agents_only"
    # an agent of another site cannot invite this site's visitor either
    visitor, _ = _browse(harness, site.site_id)
    refused = harness.reply(outsider_conn, {"action": "invite", "visitor_id": visitor["visitor_id"], "text": "hi"})
    assert refused["code"] == "visitor_not_found"


def test_returning_visitor_after_a_silence_starts_a_new_visit(harness):
    import time

    from chalicelib.models import Visitor

    site = harness.site()
    agent = harness.agent(site.site_id)
    agent_conn, _ = harness.connect(agent["token"])
    visitor, conn = _browse(harness, site.site_id)
    harness.disconnect(conn)
    # half an hour of silence (tokens are signed on the real clock, so the item is aged instead)
    Visitor(site.site_id, visitor["visitor_id"]).update(actions=[Visitor.last_seen_at.set(int(time.time()) - 31 * 60)])
    again = harness.visitor(site.site_id, visitor_id=visitor["visitor_id"])
    assert again["visitor_id"] == visitor["visitor_id"]
    conn, _ = harness.connect(again["token"])
    harness.reply(conn, {"action": "page_view", "url": "https://shop.example/back"})
    [shown] = harness.reply(agent_conn, {"action": "visitors"})["visitors"]
    assert shown["returning"] is True and shown["pages_this_visit"] == 1 and shown["page_count"] == 2
    assert shown["referrer"] is None  # this visit's first page came from nowhere


def test_invite_opens_the_conversation_assigned_to_the_inviter(harness):
    site = harness.site()
    ann = harness.agent(site.site_id)
    ann_conn, _ = harness.connect(ann["token"])
    bob = harness.agent(site.site_id, email="bob@shop.example")
    bob_conn, _ = harness.connect(bob["token"])
    visitor, visitor_conn = _browse(harness, site.site_id)
    harness.mgmt.take(visitor_conn)

    reply = harness.reply(bob_conn, {"action": "invite", "req": 7, "visitor_id": visitor["visitor_id"],
                                     "text": "Can I help you find a teapot?", "client_msg_id": "inv1"})
    assert reply["type"] == "invited" and reply["req"] == 7
    conversation = reply["conversation"]
    assert conversation["conversation_id"] == visitor["conversation_id"]
    assert conversation["status"] == "assigned" and conversation["agent_id"] == bob["agent_id"]
    assert reply["ack"]["seq"] == 1 and reply["ack"]["client_msg_id"] == "inv1"
    got = harness.mgmt.take(visitor_conn)
    assert [(f["type"], f.get("event")) for f in got] == [("conversation", "invited"), ("message", None)]
    assert got[1]["text"] == "Can I help you find a teapot?" and got[1]["sender"]["id"] == bob["agent_id"]
    assert [f["event"] for f in harness.mgmt.of_type(ann_conn, "conversation")] == ["invited"]
    # it is in the lists now, Bob's
    [listed] = harness.reply(ann_conn, {"action": "list"})["conversations"]
    assert listed["agent_id"] == bob["agent_id"]
    # a retried invitation stores nothing twice
    again = harness.reply(bob_conn, {"action": "invite", "visitor_id": visitor["visitor_id"],
                                     "text": "Can I help you find a teapot?", "client_msg_id": "inv1"})
    assert again["ack"]["seq"] == 1 and again["ack"]["duplicate"] is True
    # the visitor answers into the same conversation, still Bob's
    ack = harness.reply(visitor_conn, {"action": "send", "conversation_id": visitor["conversation_id"],
                                       "client_msg_id": "v1", "text": "yes please"})
    assert ack["seq"] == 2
    # Ann cannot take over a visitor already chatting with Bob by inviting them
    refused = harness.reply(ann_conn, {"action": "invite", "visitor_id": visitor["visitor_id"], "text": "hi"})
    assert refused["code"] == "visitor_in_conversation"


def test_invite_after_close_reopens_the_visitors_conversation(harness):
    site = harness.site()
    agent = harness.agent(site.site_id)
    agent_conn, _ = harness.connect(agent["token"])
    visitor, visitor_conn = _browse(harness, site.site_id)
    harness.say(visitor)
    harness.reply(agent_conn, {"action": "close", "conversation_id": visitor["conversation_id"]})
    harness.mgmt.take(visitor_conn)
    reply = harness.reply(agent_conn, {"action": "invite", "visitor_id": visitor["visitor_id"], "text": "Back again?"})
    assert reply["conversation"]["conversation_id"] == visitor["conversation_id"]
    assert reply["conversation"]["status"] == "assigned" and reply["ack"]["seq"] == 2
    assert [f["text"] for f in harness.mgmt.of_type(visitor_conn, "message")] == ["Back again?"]
    assert harness.reply(agent_conn, {"action": "list", "closed": True})["conversations"] == []


def test_invite_refuses_bad_input(harness):
    site = harness.site()
    agent = harness.agent(site.site_id)
    agent_conn, _ = harness.connect(agent["token"])
    visitor, _ = _browse(harness, site.site_id)
    cases = [({"visitor_id": "v_nobody0000000000000000000"}, "visitor_not_found"),
             ({"visitor_id": 5}, "invalid_visitor_id"),
             ({}, "invalid_visitor_id"),
             ({"visitor_id": visitor["visitor_id"], "text": "  "}, "empty_message"),
             ({"visitor_id": visitor["visitor_id"], "text": "x" * 100_000}, "text_too_long"),
             ({"visitor_id": visitor["visitor_id"], "text": "hi", "client_msg_id": "no spaces"},
              "invalid_client_msg_id")]
    for fields, code in cases:
        frame = {"action": "invite", "text": "hi", **fields}
        reply = harness.reply(agent_conn, frame)
        assert reply["type"] == "error" and reply["code"] == code, (fields, reply)


def _owner_token(harness, site):
    from chalicelib import sites

    sites.create_agent(site.site_id, "owner@shop.example", "correct horse", "Olive", role="owner")
    return harness.rest("POST", "/v1/agent/session", {"site_id": site.site_id, "email": "owner@shop.example",
                                                      "password": "correct horse"}).json_body["token"]


def test_auto_invitations_are_set_by_owners_and_reach_the_widget(harness):
    site = harness.site()
    token = _owner_token(harness, site)
    rules = [{"url_pattern": "/teapots/*", "delay_seconds": 5, "message": "  看中哪把茶壶了吗？ "},
             {"message": "Hello!"}]
    response = harness.rest("PATCH", "/v1/admin/site", {"widget": {"auto_invitations": rules}}, token=token)
    assert response.status_code == 200, response.json_body
    widget = harness.visitor(site.site_id)["widget"]
    assert widget["auto_invitations"] == [
        {"url_pattern": "/teapots/*", "delay_seconds": 5, "message": "看中哪把茶壶了吗？"},
        {"url_pattern": "", "delay_seconds": 0, "message": "Hello!"}]
    # a plain agent may not set them
    agent = harness.agent(site.site_id)
    refused = harness.rest("PATCH", "/v1/admin/site", {"widget": {"auto_invitations": []}}, token=agent["token"])
    assert refused.status_code == 403


def test_bad_auto_invitations_are_refused(harness):
    site = harness.site()
    token = _owner_token(harness, site)
    ok = {"url_pattern": "*", "delay_seconds": 3, "message": "hi"}
    cases = [("not a list", "invalid_auto_invitations"),
             ([ok] * 6, "invalid_auto_invitations"),
             (["hi"], "invalid_auto_invitations"),
             ([{**ok, "delay_seconds": -1}], "invalid_auto_invitations"),
             ([{**ok, "delay_seconds": 3601}], "invalid_auto_invitations"),
             ([{**ok, "delay_seconds": "5"}], "invalid_auto_invitations"),
             ([{**ok, "url_pattern": "a b"}], "invalid_auto_invitations"),
             ([{**ok, "url_pattern": "x" * 201}], "invalid_auto_invitations"),
             ([{**ok, "message": ""}], "invalid_auto_invitations"),
             ([{**ok, "message": "m" * 201}], "invalid_auto_invitations"),
             ([{"url_pattern": "*", "delay_seconds": 3}], "invalid_auto_invitations"),
             ([{**ok, "when": "now"}], "unknown_field"),
             ([{**ok, "message": "茶" * 200}] * 5, "settings_too_large")]
    for value, code in cases:
        response = harness.rest("PATCH", "/v1/admin/site", {"widget": {"auto_invitations": value}}, token=token)
        assert response.status_code == 400 and response.json_body["code"] == code, (value, response.json_body)
    assert harness.visitor(site.site_id)["widget"]["auto_invitations"] == []
