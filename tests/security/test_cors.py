"""CORS (issue 12): agent routes answer browsers only from the console's origins; measured before:
`*` on every REST route, agent login included, and `*` by default, also in the deploy template."""
from __future__ import annotations

import pytest

from chalicelib.config import settings

CONSOLE = "https://console.example"  # KEFU_CONSOLE_ORIGINS in tests/conftest.py


@pytest.mark.parametrize("path", ["/v1/agent/session", "/v1/conversations"])
def test_agent_routes_preflight_only_for_the_console(harness, path):
    allowed = harness.rest("OPTIONS", path, headers={"Origin": CONSOLE, "Access-Control-Request-Method": "POST"})
    assert allowed.headers["Access-Control-Allow-Origin"] == CONSOLE
    assert "Authorization" in allowed.headers["Access-Control-Allow-Headers"]
    refused = harness.rest("OPTIONS", path, headers={"Origin": "https://evil.example",
                                                     "Access-Control-Request-Method": "POST"})
    assert "Access-Control-Allow-Origin" not in refused.headers


def test_agent_login_answers_other_origins_without_cors(harness):
    site = harness.site()
    harness.agent(site.site_id)
    body = {"site_id": site.site_id, "email": "ann@shop.example", "password": "correct horse"}
    from_console = harness.rest("POST", "/v1/agent/session", body, headers={"Origin": CONSOLE})
    assert from_console.headers["Access-Control-Allow-Origin"] == CONSOLE
    from_elsewhere = harness.rest("POST", "/v1/agent/session", body, headers={"Origin": "https://evil.example"})
    assert "Access-Control-Allow-Origin" not in from_elsewhere.headers  # the browser hides the answer


def test_no_console_origin_by_default(monkeypatch):
    monkeypatch.delenv("KEFU_CONSOLE_ORIGINS")
    settings.cache_clear()
    try:
        assert settings().console_origins == ()
    finally:
        settings.cache_clear()


def test_the_deploy_template_requires_https_console_origins():
    import re

    from infra import build

    parameter = build._parameter("KEFU_CONSOLE_ORIGINS", None)
    assert "Default" not in parameter
    pattern = re.compile(parameter["AllowedPattern"])
    assert pattern.match("https://console.shop.example,https://admin.shop.example")
    for bad in ("*", "https://*.example", "http://console.example", "", "https://a.example/path"):
        assert not pattern.match(bad), bad
