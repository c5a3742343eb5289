"""Agent tokens can be revoked (issue 12): a password change, disabling or removing an agent ends
every token issued before, on REST and at $connect, and disabling closes live sockets."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from admin.__main__ import main
from chalicelib import agents
from chalicelib.models import Agent, Connection, Site, as_dict
from tests.e2e.stack import ROOT, RunningStack, wait_until


def _usable(harness, token):
    listing = harness.rest("GET", "/v1/conversations", token=token)
    _, status = harness.connect(token)
    return listing.status_code, listing.json_body.get("code"), status


def test_a_password_change_revokes_earlier_tokens_everywhere(harness, capsys):
    site = harness.site()
    old = harness.agent(site.site_id)
    assert _usable(harness, old["token"])[0] == 200
    assert main(["set-password", "--site", site.site_id, "--email", "ann@shop.example",
                 "--password", "a brand new one"]) == 0
    assert _usable(harness, old["token"]) == (401, "token_revoked", 401)
    fresh = harness.rest("POST", "/v1/agent/session", {"site_id": site.site_id, "email": "ann@shop.example",
                                                       "password": "a brand new one"}).json_body
    assert _usable(harness, fresh["token"])[0] == 200


def test_a_removed_agents_token_is_refused(harness):
    site = harness.site()
    token = harness.agent(site.site_id)["token"]
    Agent.get(site.site_id, "ann@shop.example").delete()
    agents.forget_cache()  # another function, or a minute later
    assert _usable(harness, token) == (401, "token_revoked", 401)


def test_disabling_an_agent_closes_their_sockets_and_refuses_login(harness):
    site = harness.site()
    agent = harness.agent(site.site_id)
    conn, _ = harness.connect(agent["token"])
    agents.disable(site.site_id, "ann@shop.example")
    assert conn in harness.mgmt.deleted
    assert conn not in as_dict(Site.get(site.site_id).agent_conns)
    assert Connection.count(conn) == 0  # a frame still in flight gets connection_unknown
    assert _usable(harness, agent["token"])[2] == 401
    login = harness.rest("POST", "/v1/agent/session", {"site_id": site.site_id, "email": "ann@shop.example",
                                                       "password": "correct horse"})
    assert login.status_code == 401 and login.json_body["code"] == "invalid_credentials"


def test_a_token_without_the_agents_version_is_refused(harness):
    import jwt

    from chalicelib.config import settings

    site = harness.site()
    agent = harness.agent(site.site_id)
    claims = jwt.decode(agent["token"], options={"verify_signature": False})
    del claims["ver"]
    stale = jwt.encode(claims, settings().token_secret, algorithm="HS256")
    assert harness.rest("GET", "/v1/conversations", token=stale).json_body["code"] == "token_revoked"


@pytest.mark.timeout(120)
def test_the_admin_cli_targets_a_running_local_stack_with_no_other_settings():
    stack = RunningStack()
    try:
        token = stack.agent()["token"]
        assert stack.rest("GET", "/v1/conversations", token=token).status_code == 200
        clean_env = {"PATH": "/usr/bin:/bin", "HOME": "/tmp"}  # no AWS or Kefu settings at all
        done = subprocess.run([sys.executable, "-m", "admin", "--stack", stack.base, "disable-agent",
                               "--site", stack.info["site_id"], "--email", stack.info["agent_email"]],
                              cwd=ROOT, env=clean_env, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout)["disabled"] is True
        # the stack's functions cache an agent's standing for at most a minute; a login is refused now
        login = stack.rest("POST", "/v1/agent/session", json={"site_id": stack.info["site_id"],
                                                              "email": stack.info["agent_email"],
                                                              "password": stack.info["agent_password"]})
        assert login.status_code == 401
        wait_until(lambda: stack.rest("GET", "/v1/conversations", token=token).status_code == 401, timeout=70,
                   interval=1)
    finally:
        stack.stop()
