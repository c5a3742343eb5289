"""No default token secret (issue 12): with none configured, no token is issued or accepted."""
from __future__ import annotations

import jwt
import pytest

from chalicelib import tokens
from chalicelib.config import settings

FORMER_DEFAULT = "kefu-insecure-development-secret"


@pytest.fixture
def unconfigured(monkeypatch):
    monkeypatch.delenv("KEFU_TOKEN_SECRET", raising=False)
    settings.cache_clear()


def _forged_agent_token(site_id: str) -> str:
    return jwt.encode({"iss": "kefu", "role": "agent", "site": site_id, "sub": "agent_x",
                       "iat": 1, "exp": 4_000_000_000}, FORMER_DEFAULT, algorithm="HS256")


def test_without_a_secret_sessions_answer_503_misconfigured(harness, unconfigured, caplog):
    site = harness.site()
    for _ in range(3):
        response = harness.rest("POST", "/v1/visitor/session", {"site_id": site.site_id})
        assert response.status_code == 503 and response.json_body["code"] == "misconfigured"
    assert sum("no token secret" in r.message for r in caplog.records) == 1  # said once, not per request


def test_without_a_secret_a_token_forged_with_the_old_default_is_refused(harness, unconfigured):
    site = harness.site()
    token = _forged_agent_token(site.site_id)
    _, status = harness.connect(token)
    assert status == 503
    response = harness.rest("GET", "/v1/conversations", token=token)
    assert response.status_code == 503 and response.json_body["code"] == "misconfigured"


# A missing SSM parameter is no secret either: tests/test_secrets.py, against SSM over real HTTP.


def test_the_local_stack_keeps_its_own_random_secret_in_its_data_folder(tmp_path, monkeypatch):
    from local import stack

    monkeypatch.delenv("KEFU_TOKEN_SECRET", raising=False)
    first = stack._local_token_secret(str(tmp_path))
    assert first == stack._local_token_secret(str(tmp_path)) and len(first) == 64 and first != FORMER_DEFAULT
    assert (tmp_path / "token-secret").stat().st_mode & 0o077 == 0
    assert stack._local_token_secret(None) != stack._local_token_secret(None)
