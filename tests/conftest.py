"""Shared test setup: a fake AWS environment, fresh moto tables per test, recorded pushes."""
from __future__ import annotations

import os

import pytest

# Before anything imports chalicelib: settings and pynamodb table names are read at import.
os.environ.update({
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SECURITY_TOKEN": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_REGION": "us-east-1",
    "KEFU_TABLE_PREFIX": "kefu-test-",
    "KEFU_TOKEN_SECRET": "test-secret-0123456789abcdef0123456789",
    "KEFU_WS_MANAGEMENT_ENDPOINT": "https://test.execute-api.us-east-1.amazonaws.com/dev",
    "KEFU_CONSOLE_ORIGINS": "https://console.example",
    # Off for unit tests (an agent's $connect would wait out the cache); tests/test_site_cache.py
    # turns it on, and the end-to-end stack runs with the default.
    "KEFU_SITE_CACHE_SECONDS": "0",
})
for _name in ("KEFU_DYNAMODB_ENDPOINT",):
    os.environ.pop(_name, None)

pytest_plugins = ["tests.support"]


@pytest.fixture(scope="session")
def packaged_template():
    """out/package/sam.json as `make package` builds it (stage dev), rebuilt when stale."""
    from tests.packaged import packaged_template

    return packaged_template()


@pytest.fixture(autouse=True)
def fresh_settings():
    """Settings are cached per process: a test that changed the environment (monkeypatch) must not
    leave settings read from it to the next. Set up before monkeypatch, so torn down after its undo."""
    yield
    from chalicelib.config import settings

    settings.cache_clear()
