"""Settings reach the widget with its session; visitors give a contact; a resume link brings them back."""
from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

from chalicelib import contact, site_settings, sites
from chalicelib.models import Conversation, Site, Visitor


def _owner_token(harness, site):
    sites.create_agent(site.site_id, "owner@shop.example", "correct horse", "Olive", role="owner")
    return harness.rest("POST", "/v1/agent/session", {"site_id": site.site_id, "email": "owner@shop.example",
                                                      "password": "correct horse"}).json_body["token"]


def test_the_session_carries_the_widget_settings_and_agents_names(harness):
    site = harness.site()
    token = _owner_token(harness, site)
    harness.rest("PATCH", "/v1/admin/site", {"default_language": "zh", "widget": {
        "color": "#123456", "greeting": "欢迎光临", "team_name": "茶壶客服", "expected_reply_minutes": 5,
        "pre_chat_form": {"email": "required"}}}, token=token)
    harness.agent(site.site_id, email="ann@shop.example")
    visitor = harness.visitor(site.site_id)
    widget = visitor["widget"]
    assert widget["color"] == "#123456" and widget["greeting"] == "欢迎光临" and widget["team_name"] == "茶壶客服"
    assert widget["pre_chat_form"] == {"name": "off", "email": "required", "phone": "off"}
    assert widget["default_language"] == "zh" and widget["expected_reply_minutes"] == 5
    assert widget["within_hours"] is True  # no business hours set: always open
    names = sorted(a["name"] for a in visitor["agents"].values())
    assert names == ["Ann", "Olive"]
    assert all(set(a) == {"name", "avatar_url"} for a in visitor["agents"].values())  # nothing else of agents
    assert visitor["contact"] == {"name": None, "email": None, "phone": None}


def test_a_site_made_before_settings_gets_the_defaults(harness):
    site = harness.site()
    assert Site.get(site.site_id).settings is None
    widget = harness.visitor(site.site_id)["widget"]
    assert widget["offline"] == "form" and widget["position"] == "right" and widget["greeting"] == ""


def test_business_hours_in_the_sites_time_zone(timeline):
    hours = {"enabled": True, "time_zone": "Asia/Shanghai", "days": {"mon": [["09:00", "18:00"]]}}
    shanghai = ZoneInfo("Asia/Shanghai")
    monday_10 = datetime(2026, 11, 23, 10, 0, tzinfo=shanghai).timestamp()  # a Monday
    monday_20 = datetime(2026, 11, 23, 20, 0, tzinfo=shanghai).timestamp()
    tuesday_10 = datetime(2026, 11, 24, 10, 0, tzinfo=shanghai).timestamp()
    assert site_settings.within_hours(hours, monday_10)
    assert not site_settings.within_hours(hours, monday_20)
    assert not site_settings.within_hours(hours, tuesday_10)
    assert site_settings.within_hours({**hours, "enabled": False}, tuesday_10)
    # 10:00 in Shanghai is 02:00 UTC: the zone decides, not the server's clock
    assert not site_settings.within_hours({**hours, "time_zone": "UTC"}, monday_10)


def test_outside_business_hours_the_session_says_so(harness, monkeypatch):
    site = harness.site()
    token = _owner_token(harness, site)
    now = datetime.now(ZoneInfo("UTC"))
    day = site_settings.DAYS[now.weekday()]
    closed_now = f"{(now.hour + 2) % 24:02d}:00", f"{(now.hour + 2) % 24:02d}:30"
    response = harness.rest("PATCH", "/v1/admin/site", {"widget": {"business_hours": {
        "enabled": True, "time_zone": "UTC", "days": {day: [list(closed_now)]}}}}, token=token)
    assert response.status_code == 200, response.json_body
    assert harness.visitor(site.site_id)["widget"]["within_hours"] is False


def test_visitor_gives_a_contact_and_agents_see_it(harness):
    site, agent, agent_conn, visitor, visitor_conn = harness.chat()
    response = harness.rest("POST", "/v1/visitor/contact", {"name": "Vera", "email": "Vera@Mail.example",
                                                            "phone": "+86 138 0000 0000"}, token=visitor["token"])
    assert response.status_code == 200, response.json_body
    stored = Visitor.get(site.site_id, visitor["visitor_id"])
    assert (stored.name, stored.email, stored.phone) == ("Vera", "vera@mail.example", "+86 138 0000 0000")
    assert Conversation.get(visitor["conversation_id"]).contact_email == "vera@mail.example"
    harness.say(visitor)
    state = harness.reply(agent_conn, {"action": "state"})
    shown = state["conversations"][0]
    assert shown["visitor_email"] == "vera@mail.example" and shown["visitor_phone"] == "+86 138 0000 0000"
    again = harness.visitor(site.site_id, visitor_id=visitor["visitor_id"])
    assert again["contact"]["email"] == "vera@mail.example"  # the widget does not ask twice


def test_bad_contacts_are_refused(harness):
    site = harness.site()
    visitor = harness.visitor(site.site_id)
    agent = harness.agent(site.site_id)
    for body, code in [({"email": "not-an-email"}, "invalid_email"), ({"email": "a@b"}, "invalid_email"),
                       ({"phone": "call me"}, "invalid_phone"), ({"name": ""}, "invalid_name"),
                       ({"address": "x"}, "unknown_field"), ({}, "empty_contact")]:
        response = harness.rest("POST", "/v1/visitor/contact", body, token=visitor["token"])
        assert (response.status_code, response.json_body["code"]) == (400, code), body
    response = harness.rest("POST", "/v1/visitor/contact", {"email": "a@b.example"}, token=agent["token"])
    assert (response.status_code, response.json_body["code"]) == (403, "visitors_only")
    assert harness.rest("POST", "/v1/visitor/contact", {"email": "a@b.example"}).json_body["code"] == "token_missing"


def test_a_resume_link_brings_the_visitor_back_to_their_conversation(harness, timeline):
    site = harness.site()
    visitor = harness.visitor(site.site_id)
    harness.say(visitor)
    link = contact.resume_link("https://shop.example/teapots?x=1#top", site.site_id, visitor["visitor_id"])
    assert link.startswith("https://shop.example/teapots?x=1#kefu-resume=")
    token = link.split("#kefu-resume=", 1)[1]
    back = harness.visitor(site.site_id, resume_token=token)  # another browser: no stored visitor id
    assert back["visitor_id"] == visitor["visitor_id"] and back["conversation_id"] == visitor["conversation_id"]
    other = harness.site(origins=("https://other.example",))
    refused = harness.rest("POST", "/v1/visitor/session", {"site_id": other.site_id, "resume_token": token},
                           headers={"Origin": "https://other.example"})
    assert (refused.status_code, refused.json_body["code"]) == (403, "resume_token_invalid")
    forged = harness.rest("POST", "/v1/visitor/session", {"site_id": site.site_id, "resume_token": visitor["token"]},
                          headers={"Origin": "https://shop.example"})
    assert forged.json_body["code"] == "resume_token_invalid"  # a visitor token is not a resume link
    timeline(contact.RESUME_SECONDS + 1)
    expired = harness.rest("POST", "/v1/visitor/session", {"site_id": site.site_id, "resume_token": token},
                           headers={"Origin": "https://shop.example"})
    assert expired.json_body["code"] == "resume_token_expired"


def test_the_largest_settings_keep_a_message_within_its_read_budget(harness, no_rate_limits):
    """Settings ride on the site item, read with every message: at their bound, a message still
    costs one eventually consistent read of at most one unit (tests/test_call_budget.py)."""
    from bench.metering import counting

    site, agent, agent_conn, visitor, visitor_conn = harness.chat()
    token = _owner_token(harness, site)
    biggest = {"widget": {"greeting": "欢" * 300, "team_name": "队" * 60, "launcher_text": "聊" * 40,
                          "team_avatar_url": "https://cdn.example/" + "a" * 470,
                          "business_hours": {"enabled": True, "time_zone": "America/Argentina/ComodRivadavia",
                                             "days": {d: [["00:00", "08:00"], ["09:00", "12:00"], ["13:00", "24:00"]]
                                                      for d in site_settings.DAYS}}}}
    assert harness.rest("PATCH", "/v1/admin/site", biggest, token=token).status_code == 200
    cid = visitor["conversation_id"]
    harness.reply(visitor_conn, {"action": "send", "conversation_id": cid, "client_msg_id": "warm", "text": "hi"})
    with counting() as calls:
        for i in range(5):
            ack = harness.reply(visitor_conn, {"action": "send", "conversation_id": cid, "client_msg_id": f"m{i}",
                                               "text": "您好，请问这个茶壶什么时候发货？"})
            assert ack["type"] == "ack"
    assert calls.reads == 5 and calls.read_units <= 5 * 1, calls.units()
    assert calls.writes == 10 and calls.write_units <= 5 * 3, calls.units()
