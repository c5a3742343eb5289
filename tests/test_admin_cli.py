from __future__ import annotations

import json

from admin.__main__ import main
from chalicelib.models import Agent, Site
from chalicelib.passwords import verify_password


def test_admin_cli_creates_site_agent_rotates_and_prints_snippet(aws, capsys):
    assert main(["create-site", "--name", "Shop", "--origin", "https://shop.example"]) == 0
    site = json.loads(capsys.readouterr().out)
    assert Site.get(site["site_id"]).allowed_origins == ["https://shop.example"]
    assert main(["create-agent", "--site", site["site_id"], "--email", "Ann@Shop.example",
                 "--name", "Ann", "--password", "long enough"]) == 0
    capsys.readouterr()
    agent = Agent.get(site["site_id"], "ann@shop.example")
    assert verify_password("long enough", agent.password_hash) and not verify_password("wrong", agent.password_hash)
    assert "long enough" not in agent.password_hash
    assert main(["rotate-secret", "--site", site["site_id"]]) == 0
    rotated = json.loads(capsys.readouterr().out)["secret"]
    assert rotated != site["secret"] and Site.get(site["site_id"]).secret == rotated
    assert main(["snippet", "--site", site["site_id"], "--script-url", "https://cdn.example/widget.js"]) == 0
    snippet = capsys.readouterr().out
    assert site["site_id"] in snippet and "https://cdn.example/widget.js" in snippet and "Kefu.q" in snippet


def test_admin_cli_reports_errors_with_codes(aws, capsys):
    assert main(["create-agent", "--site", "site_missing", "--email", "a@b.c", "--name", "A", "--password", "12345678"]) == 2
    assert "site_not_found" in capsys.readouterr().err
    main(["create-site", "--name", "Shop", "--site-id", "s1"])
    capsys.readouterr()
    assert main(["create-agent", "--site", "s1", "--email", "a@b.c", "--name", "A", "--password", "short"]) == 2
    assert "weak_password" in capsys.readouterr().err
    main(["create-agent", "--site", "s1", "--email", "a@b.c", "--name", "A", "--password", "12345678"])
    assert main(["create-agent", "--site", "s1", "--email", "a@b.c", "--name", "A", "--password", "12345678"]) == 2
    assert "agent_exists" in capsys.readouterr().err
