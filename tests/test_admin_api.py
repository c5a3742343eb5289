"""The owners' REST API (/v1/admin): roles, settings validated strictly, agents, the secret."""
from __future__ import annotations

import pytest

from chalicelib import sites
from chalicelib.models import Agent, Site

CONSOLE = "https://console.example"


@pytest.fixture
def console_origin(monkeypatch):
    from chalicelib.config import settings

    monkeypatch.setenv("KEFU_CONSOLE_ORIGINS", CONSOLE)
    settings.cache_clear()
    return CONSOLE


def login(harness, site_id, email, password="correct horse"):
    response = harness.rest("POST", "/v1/agent/session", {"site_id": site_id, "email": email, "password": password})
    assert response.status_code == 200, response.json_body
    return response.json_body


def owner_of(harness, site, email="owner@shop.example"):
    sites.create_agent(site.site_id, email, "correct horse", "Olive", role="owner")
    return login(harness, site.site_id, email)


def test_login_says_the_role_and_the_token_carries_it(harness):
    from chalicelib.tokens import verify

    site = harness.site()
    owner = owner_of(harness, site)
    agent = harness.agent(site.site_id)
    assert owner["role"] == "owner" and agent["role"] == "agent"
    assert verify(owner["token"]).is_owner and not verify(agent["token"]).is_owner
    assert verify(owner["token"]).is_agent  # an owner is also an agent


def test_agent_and_visitor_tokens_get_403_owner_only(harness):
    site = harness.site()
    agent = harness.agent(site.site_id)
    visitor = harness.visitor(site.site_id)
    for token in (agent["token"], visitor["token"]):
        for method, path, body in [("GET", "/v1/admin/site", None), ("PATCH", "/v1/admin/site", {"name": "X"}),
                                   ("GET", "/v1/admin/agents", None), ("POST", "/v1/admin/site/secret", None),
                                   ("GET", "/v1/admin/site/secret", None)]:
            response = harness.rest(method, path, body, token=token)
            assert (response.status_code, response.json_body["code"]) == (403, "owner_only"), (method, path)
    assert harness.rest("GET", "/v1/admin/site").json_body["code"] == "token_missing"
    assert Site.get(site.site_id).name == "Shop"


def test_another_sites_owner_reaches_only_their_own(harness):
    mine, theirs = harness.site(), harness.site()
    my_owner = owner_of(harness, mine)
    their_agent = harness.agent(theirs.site_id, email="bob@other.example")
    assert harness.rest("GET", "/v1/admin/site", token=my_owner["token"]).json_body["site_id"] == mine.site_id
    response = harness.rest("PATCH", f"/v1/admin/agents/{their_agent['agent_id']}", {"disabled": True},
                            token=my_owner["token"])
    assert (response.status_code, response.json_body["code"]) == (404, "agent_not_found")
    assert not Agent.get(theirs.site_id, "bob@other.example").disabled
    listed = harness.rest("GET", "/v1/admin/agents", token=my_owner["token"]).json_body["agents"]
    assert [a["email"] for a in listed] == ["owner@shop.example"]


def test_owner_updates_settings_and_reads_them_back(harness):
    site = harness.site()
    owner = owner_of(harness, site)
    changes = {
        "name": "Teapots",
        "allowed_origins": ["https://shop.example", "https://www.shop.example:8443/"],
        "default_language": "zh",
        "upload": {"allowed_types": ["image/*", "application/pdf"], "max_bytes": 2048000},
        "widget": {"color": "#AA3300", "position": "left", "launcher_text": "聊聊", "greeting": "您好！有什么可以帮您？",
                   "team_name": "茶壶客服", "team_avatar_url": "https://cdn.shop.example/team.png",
                   "pre_chat_form": {"name": "required", "email": "optional"}, "offline": "form",
                   "business_hours": {"enabled": True, "time_zone": "Asia/Shanghai",
                                      "days": {"mon": [["09:00", "12:00"], ["13:00", "18:00"]]}},
                   "expected_reply_minutes": 10},
    }
    response = harness.rest("PATCH", "/v1/admin/site", changes, token=owner["token"])
    assert response.status_code == 200, response.json_body
    shown = harness.rest("GET", "/v1/admin/site", token=owner["token"]).json_body
    assert shown["name"] == "Teapots" and shown["default_language"] == "zh"
    assert shown["allowed_origins"] == ["https://shop.example", "https://www.shop.example:8443"]
    assert shown["upload"] == {"allowed_types": ["image/*", "application/pdf"], "max_bytes": 2048000}
    assert shown["widget"]["color"] == "#aa3300" and shown["widget"]["greeting"] == "您好！有什么可以帮您？"
    assert shown["widget"]["pre_chat_form"] == {"name": "required", "email": "optional", "phone": "off"}
    # a partial change keeps the rest
    harness.rest("PATCH", "/v1/admin/site", {"widget": {"color": "#00aa00"}}, token=owner["token"])
    again = harness.rest("GET", "/v1/admin/site", token=owner["token"]).json_body
    assert again["widget"]["color"] == "#00aa00" and again["widget"]["team_name"] == "茶壶客服"
    # the new origins apply at once: the widget on the new origin gets a session
    visitor = harness.visitor(site.site_id, origin="https://www.shop.example:8443")
    assert "token" in visitor


@pytest.mark.parametrize("changes, code", [
    ({"colour": "#fff000"}, "unknown_field"),
    ({"widget": {"colour": "#fff000"}}, "unknown_field"),
    ({"widget": {"pre_chat_form": {"address": "required"}}}, "unknown_field"),
    ({"upload": {"types": ["image/png"]}}, "unknown_field"),
    ({"widget": {"greeting": "您" * 301}}, "greeting_too_long"),
    ({"allowed_origins": ["shop.example"]}, "invalid_origin"),
    ({"allowed_origins": ["https://shop.example/path"]}, "invalid_origin"),
    ({"allowed_origins": ["javascript://x"]}, "invalid_origin"),
    ({"allowed_origins": ["https://a b.example"]}, "invalid_origin"),
    ({"allowed_origins": "https://shop.example"}, "invalid_origin"),
    ({"widget": {"business_hours": {"enabled": True, "time_zone": "Mars/Olympus", "days": {"mon": [["09:00", "18:00"]]}}}},
     "invalid_business_hours"),
    ({"widget": {"business_hours": {"enabled": True, "days": {"mon": [["18:00", "09:00"]]}}}}, "invalid_business_hours"),
    ({"widget": {"business_hours": {"enabled": True, "days": {"mon": [["25:00", "26:00"]]}}}}, "invalid_business_hours"),
    ({"widget": {"business_hours": {"enabled": True, "days": {"someday": [["09:00", "10:00"]]}}}}, "invalid_business_hours"),
    ({"widget": {"business_hours": {"enabled": True, "days": {}}}}, "invalid_business_hours"),
    ({"widget": {"business_hours": {"enabled": True, "days": {"mon": [["09:00", "12:00"], ["11:00", "13:00"]]}}}},
     "invalid_business_hours"),
    ({"widget": {"color": "red"}}, "invalid_color"),
    ({"widget": {"position": "top"}}, "invalid_position"),
    ({"widget": {"pre_chat_form": {"email": "always"}}}, "invalid_pre_chat_form"),
    ({"widget": {"team_avatar_url": "http://insecure.example/a.png"}}, "invalid_team_avatar_url"),
    ({"widget": {"expected_reply_minutes": 0}}, "invalid_expected_reply_minutes"),
    ({"widget": {"offline": "email"}}, "invalid_offline"),
    ({"default_language": "fr"}, "invalid_default_language"),
    ({"upload": {"max_bytes": 10 ** 12}}, "invalid_upload_max_bytes"),
    ({"upload": {"allowed_types": ["not a type"]}}, "invalid_upload_types"),
    ({"name": ""}, "invalid_name"),
])
def test_bad_settings_are_refused_with_a_code_and_nothing_changes(harness, changes, code):
    site = harness.site()
    owner = owner_of(harness, site)
    before = Site.get(site.site_id).serialize()
    response = harness.rest("PATCH", "/v1/admin/site", {"name": "Changed", **changes}
                            if "name" not in changes else changes, token=owner["token"])
    assert (response.status_code, response.json_body["code"]) == (400, code), response.json_body
    assert Site.get(site.site_id).serialize() == before


def test_settings_are_bounded_in_size(harness):
    from chalicelib import site_settings

    site = harness.site()
    owner = owner_of(harness, site)
    biggest = {"widget": {"greeting": "欢" * 300, "team_name": "队" * 60, "launcher_text": "聊" * 40,
                          "team_avatar_url": "https://cdn.example/" + "a" * 470,
                          "business_hours": {"enabled": True, "time_zone": "America/Argentina/ComodRivadavia",
                                             "days": {d: [["00:00", "08:00"], ["09:00", "12:00"], ["13:00", "24:00"]]
                                                      for d in site_settings.DAYS}}}}
    response = harness.rest("PATCH", "/v1/admin/site", biggest, token=owner["token"])
    assert response.status_code == 200, response.json_body
    from bench.metering import item_size

    assert item_size(Site.get(site.site_id).serialize()) < 4096  # one read unit, as before settings


def test_agents_listed_created_disabled_reset_and_reroled(harness):
    site = harness.site()
    owner = owner_of(harness, site)
    token = owner["token"]
    created = harness.rest("POST", "/v1/admin/agents", {"email": "Cat@Shop.example", "name": "Cat",
                                                        "password": "cat password"}, token=token)
    assert created.status_code == 200 and created.json_body["role"] == "agent"
    cat = login(harness, site.site_id, "cat@shop.example", "cat password")
    invited = harness.rest("POST", "/v1/admin/agents", {"email": "dan@shop.example", "name": "Dan", "role": "owner"},
                           token=token).json_body
    assert len(invited["password"]) >= 12  # made up, shown once
    login(harness, site.site_id, "dan@shop.example", invited["password"])
    listed = {a["email"]: a for a in harness.rest("GET", "/v1/admin/agents", token=token).json_body["agents"]}
    assert set(listed) == {"owner@shop.example", "cat@shop.example", "dan@shop.example"}
    assert listed["dan@shop.example"]["role"] == "owner" and "password" not in listed["dan@shop.example"]
    assert all("password_hash" not in a for a in listed.values())

    conn, status = harness.connect(cat["token"])
    assert status == 200
    disabled = harness.rest("PATCH", f"/v1/admin/agents/{cat['agent_id']}", {"disabled": True}, token=token)
    assert disabled.status_code == 200 and disabled.json_body["disabled"] is True
    assert conn in harness.mgmt.deleted  # logged out at once
    assert harness.rest("GET", "/v1/conversations", token=cat["token"]).json_body["code"] in ("agent_disabled", "token_revoked")
    assert harness.rest("POST", "/v1/agent/session", {"site_id": site.site_id, "email": "cat@shop.example",
                                                      "password": "cat password"}).status_code == 401
    harness.rest("PATCH", f"/v1/admin/agents/{cat['agent_id']}", {"disabled": False, "password": "new cat password"},
                 token=token)
    cat = login(harness, site.site_id, "cat@shop.example", "new cat password")
    assert harness.rest("PATCH", f"/v1/admin/agents/{cat['agent_id']}", {"role": "owner"}, token=token).status_code == 200
    assert harness.rest("GET", "/v1/admin/site", token=cat["token"]).status_code == 200  # promoted: at once
    harness.rest("PATCH", f"/v1/admin/agents/{cat['agent_id']}", {"role": "agent"}, token=token)
    assert harness.rest("GET", "/v1/admin/site", token=cat["token"]).json_body["code"] == "owner_only"  # demoted: at once


@pytest.mark.parametrize("body, code, status", [
    ({"email": "x@shop.example", "name": "X", "password": "short"}, "weak_password", 400),
    ({"email": "x@shop.example", "name": "X", "password": 12345678}, "invalid_password", 400),
    ({"email": "not an email", "name": "X", "password": "long enough"}, "invalid_email", 400),
    ({"email": "x@shop.example", "name": "X", "password": "long enough", "role": "admin"}, "invalid_role", 400),
    ({"email": "x@shop.example", "name": "X", "password": "long enough", "superuser": True}, "unknown_field", 400),
    ({"email": "x@shop.example", "password": "long enough"}, "invalid_name", 400),
    ({"email": "owner@shop.example", "name": "Again", "password": "long enough"}, "agent_exists", 409),
])
def test_bad_agents_are_refused(harness, body, code, status):
    site = harness.site()
    owner = owner_of(harness, site)
    response = harness.rest("POST", "/v1/admin/agents", body, token=owner["token"])
    assert (response.status_code, response.json_body["code"]) == (status, code)


def test_the_last_owner_stays(harness):
    site = harness.site()
    owner = owner_of(harness, site)
    for change in ({"role": "agent"}, {"disabled": True}):
        response = harness.rest("PATCH", f"/v1/admin/agents/{owner['agent_id']}", change, token=owner["token"])
        assert (response.status_code, response.json_body["code"]) == (409, "last_owner")
    response = harness.rest("PATCH", f"/v1/admin/agents/{owner['agent_id']}", {"role": "boss"}, token=owner["token"])
    assert response.json_body["code"] == "invalid_role"
    for change, code in [({"password": "short"}, "weak_password"), ({"disabled": "yes"}, "invalid_disabled"),
                         ({"avatar_url": "http://x.example/a.png"}, "invalid_avatar_url"), ({"email": "x@y.z"}, "unknown_field")]:
        response = harness.rest("PATCH", f"/v1/admin/agents/{owner['agent_id']}", change, token=owner["token"])
        assert (response.status_code, response.json_body["code"]) == (400, code), change


def test_secret_revealed_and_rotated_only_for_owners(harness):
    site = harness.site()
    owner = owner_of(harness, site)
    assert harness.rest("GET", "/v1/admin/site/secret", token=owner["token"]).json_body["secret"] == site.secret
    rotated = harness.rest("POST", "/v1/admin/site/secret", token=owner["token"]).json_body["secret"]
    assert rotated != site.secret and Site.get(site.site_id).secret == rotated
    assert site.secret not in harness.rest("GET", "/v1/admin/site", token=owner["token"]).body.decode()
    snippet = harness.rest("GET", "/v1/admin/snippet?script_url=https%3A%2F%2Fcdn.example%2Fwidget.js",
                           token=owner["token"]).json_body["snippet"]
    assert site.site_id in snippet and "https://cdn.example/widget.js" in snippet
    bad = harness.rest("GET", "/v1/admin/snippet?script_url=javascript:alert(1)", token=owner["token"])
    assert bad.json_body["code"] == "invalid_script_url"


def test_admin_cors_like_agent_routes(harness, console_origin):
    site = harness.site()
    owner = owner_of(harness, site)
    ok = harness.rest("GET", "/v1/admin/site", token=owner["token"], headers={"Origin": console_origin})
    assert ok.headers.get("Access-Control-Allow-Origin") == console_origin
    shop = harness.rest("GET", "/v1/admin/site", token=owner["token"], headers={"Origin": "https://shop.example"})
    assert "Access-Control-Allow-Origin" not in shop.headers
    preflight = harness.rest("OPTIONS", "/v1/admin/agents/agent_x", headers={"Origin": console_origin})
    assert "PATCH" in preflight.headers["Access-Control-Allow-Methods"]
    refused = harness.rest("OPTIONS", "/v1/admin/site", headers={"Origin": "https://evil.example"})
    assert "Access-Control-Allow-Origin" not in refused.headers


def test_cli_creates_an_owner(aws, capsys):
    import json

    from admin.__main__ import main

    main(["create-site", "--name", "Shop", "--site-id", "s1"])
    capsys.readouterr()
    assert main(["create-agent", "--site", "s1", "--email", "o@b.c", "--name", "O", "--password", "12345678",
                 "--role", "owner"]) == 0
    assert json.loads(capsys.readouterr().out)["role"] == "owner"
    assert Agent.get("s1", "o@b.c").role == "owner"
