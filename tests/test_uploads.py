"""Direct uploads: grants signed with STS credentials, checked by the OSS stand-in over real HTTP."""
from __future__ import annotations

import json
import pathlib
import subprocess
import sys
import time

import oss2
import pytest
import requests

from chalicelib import aliyun_sts, uploads
from chalicelib.config import settings
from chalicelib.errors import KefuError
from local.oss_standin import start_standins

ROOT = pathlib.Path(__file__).resolve().parents[1]
BUCKET = "kefu-test-bucket"
LONG_TERM_ID, LONG_TERM_SECRET = "LTAI-test", "long-term-secret-0123456789"
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 200


class Clock:
    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def standins(tmp_path, monkeypatch, clock):
    running = start_standins("127.0.0.1", str(tmp_path), BUCKET, LONG_TERM_ID, LONG_TERM_SECRET, clock=clock)
    for name, value in {
        "KEFU_OSS_ENDPOINT": running.oss_endpoint, "KEFU_STS_ENDPOINT": running.sts_endpoint,
        "KEFU_OSS_BUCKET": BUCKET, "KEFU_OSS_REGION": "cn-hangzhou", "KEFU_OSS_PREFIX": "uploads/",
        "KEFU_STS_ROLE_ARN": "acs:ram::1000:role/kefu-uploads",
        "KEFU_ALIYUN_ACCESS_KEY_ID": LONG_TERM_ID, "KEFU_ALIYUN_ACCESS_KEY_SECRET": LONG_TERM_SECRET,
    }.items():
        monkeypatch.setenv(name, value)
    settings.cache_clear()
    monkeypatch.setattr(aliyun_sts, "credentials", aliyun_sts.CredentialCache())
    yield running
    running.stop()
    settings.cache_clear()


def _grant(**overrides):
    args = dict(site_id="site1", conversation_id="conv1", file_name="photo.png", content_type="image/png",
                size=len(PNG), max_bytes=1024, allowed_types=["image/*", "application/pdf"])
    args.update(overrides)
    return uploads.create_upload_grant(**args)


def _post(grant, body=PNG, **field_changes):
    fields = {**grant["fields"], **field_changes}
    fields = {k: v for k, v in fields.items() if v is not None}
    return requests.post(grant["url"], data=fields, files={"file": ("photo.png", body, fields.get("Content-Type"))},
                         timeout=10)


def _error_code(response):
    return response.text.split("<Code>")[1].split("</Code>")[0] if "<Code>" in response.text else None


def test_grant_upload_and_signed_download(standins):
    grant = _grant()
    assert grant["method"] == "POST" and grant["headers"] == {}
    assert grant["key"].startswith("uploads/site1/conv1/") and grant["key"].endswith("/photo.png")
    assert "AccessKeySecret" not in json.dumps(grant) and LONG_TERM_SECRET not in json.dumps(grant)
    response = _post(grant)
    assert response.status_code == 201, response.text
    assert uploads.object_size(grant["key"]) == len(PNG)
    download = uploads.signed_download_url(grant["key"])
    got = requests.get(download["url"], timeout=10)
    assert got.status_code == 200 and got.content == PNG and got.headers["Content-Type"] == "image/png"
    assert uploads.object_size(grant["key"].replace("photo.png", "other.png")) is None


@pytest.mark.parametrize("change,code,status", [
    ({"key": "uploads/site1/conv1/0123456789abcdef0123456789abcdef/evil.png"}, "AccessDenied", 403),
    ({"Content-Type": "text/html"}, "AccessDenied", 403),
    ({"x-oss-security-token": None}, "AccessDenied", 403),
    ({"x-oss-security-token": "CAISforged"}, "InvalidSecurityToken", 403),
    ({"Signature": "AAAAAAAAAAAAAAAAAAAAAAAAAAA="}, "SignatureDoesNotMatch", 403),
    ({"OSSAccessKeyId": LONG_TERM_ID}, "InvalidSecurityToken", 403),
    ({"success_action_status": "200"}, "AccessDenied", 403),
])
def test_tampered_form_is_refused(standins, change, code, status):
    response = _post(_grant(), **change)
    assert (response.status_code, _error_code(response)) == (status, code), response.text


def test_body_over_the_size_limit_is_refused_by_oss_itself(standins):
    grant = _grant(size=100, max_bytes=300)  # the client claims 100 bytes, then sends more
    response = _post(grant, body=b"x" * 301)
    assert (response.status_code, _error_code(response)) == (400, "EntityTooLarge")
    assert uploads.object_size(grant["key"]) is None


def test_expired_policy_is_refused(standins, clock):
    grant = _grant()
    clock.offset = settings().upload_url_ttl + 5
    response = _post(grant)
    assert response.status_code == 403 and "expired" in response.text.lower()


def test_second_object_under_another_key_with_the_same_grant_is_refused(standins):
    grant = _grant()
    assert _post(grant).status_code == 201
    other = grant["key"].rsplit("/", 1)[0] + "/second.png"
    assert _post(grant, key=other).status_code == 403
    assert uploads.object_size(other) is None


def test_expired_download_url_is_refused(standins, clock):
    grant = _grant()
    _post(grant)
    url = uploads.signed_download_url(grant["key"])["url"]
    clock.offset = settings().download_url_ttl + 5
    assert requests.get(url, timeout=10).status_code == 403


def test_session_policy_limits_temporary_credentials_to_the_prefix(standins):
    creds = aliyun_sts.credentials.get()
    bucket = oss2.Bucket(oss2.StsAuth(creds.access_key_id, creds.access_key_secret, creds.security_token),
                         standins.oss_endpoint, BUCKET)
    bucket.put_object("uploads/site1/conv1/x/ok.txt", b"ok")  # inside the prefix: allowed
    with pytest.raises(oss2.exceptions.AccessDenied):
        bucket.put_object("private/secrets.txt", b"no")


def test_grant_policy_refusals_are_typed():
    with pytest.raises(KefuError) as too_big:
        uploads.create_upload_grant(site_id="s", conversation_id="c", file_name="a.png", content_type="image/png",
                                    size=2000, max_bytes=1000, allowed_types=["image/*"])
    assert (too_big.value.code, too_big.value.status) == ("upload_too_large", 413)
    with pytest.raises(KefuError) as wrong_type:
        uploads.create_upload_grant(site_id="s", conversation_id="c", file_name="a.exe",
                                    content_type="application/x-msdownload", size=10, max_bytes=1000,
                                    allowed_types=["image/*"])
    assert (wrong_type.value.code, wrong_type.value.status) == ("upload_type_not_allowed", 415)
    with pytest.raises(KefuError) as empty:
        uploads.create_upload_grant(site_id="s", conversation_id="c", file_name="a.png", content_type="image/png",
                                    size=0, max_bytes=1000, allowed_types=["image/*"])
    assert empty.value.code == "invalid_size"


def test_key_belongs_only_to_its_conversation():
    key = "uploads/site1/conv1/0123456789abcdef0123456789abcdef/a.png"
    assert uploads.key_belongs_to(key, "site1", "conv1")
    assert not uploads.key_belongs_to(key, "site1", "conv2")
    assert not uploads.key_belongs_to(key, "site2", "conv1")
    assert not uploads.key_belongs_to("uploads/site1/conv1/../conv2/x/a.png", "site1", "conv1")


def test_sts_is_called_once_for_many_grants_and_again_after_expiry(standins, monkeypatch):
    now = [time.time()]
    calls = []

    def fetch():
        calls.append(now[0])
        return aliyun_sts.assume_role()

    cache = aliyun_sts.CredentialCache(fetch=fetch, clock=lambda: now[0])
    monkeypatch.setattr(aliyun_sts, "credentials", cache)
    for _ in range(25):
        _grant()
    assert len(calls) == 1 and standins_calls(standins) == 1
    now[0] += aliyun_sts.DURATION_SECONDS - aliyun_sts.REFRESH_MARGIN_SECONDS + 1  # close to expiry
    _grant()
    assert len(calls) == 2 and standins_calls(standins) == 2


def standins_calls(standins):
    """AssumeRole calls the STS stand-in answered (each registers one temporary key)."""
    return sum(1 for key in standins.registry._by_id if key.startswith("STS."))


def test_sts_request_against_a_recorded_response_shape(monkeypatch):
    """The AssumeRole request we make, and parsing the response shape STS returns, offline."""
    monkeypatch.setenv("KEFU_OSS_BUCKET", "bkt")
    monkeypatch.setenv("KEFU_OSS_PREFIX", "uploads/")
    monkeypatch.setenv("KEFU_STS_ROLE_ARN", "acs:ram::1000:role/kefu-uploads")
    settings.cache_clear()
    recorded = (ROOT / "tests" / "fixtures" / "aliyun" / "assume_role_response.json").read_bytes()
    seen = {}

    class RecordingClient:
        def do_action_with_exception(self, request):
            seen["action"] = request.get_action_name()
            seen["params"] = request.get_query_params()
            return recorded

    try:
        creds = aliyun_sts.assume_role(RecordingClient())
    finally:
        settings.cache_clear()
    assert seen["action"] == "AssumeRole"
    assert seen["params"]["RoleArn"] == "acs:ram::1000:role/kefu-uploads"
    assert seen["params"]["DurationSeconds"] == 900
    policy = json.loads(seen["params"]["Policy"])
    assert policy["Statement"] == [{"Effect": "Allow", "Action": ["oss:PutObject", "oss:GetObject"],
                                    "Resource": ["acs:oss:*:*:bkt/uploads/*"]}]
    assert creds.access_key_id.startswith("STS.") and creds.security_token.startswith("CAIS")
    assert creds.expires_at == 1795349700.0  # 2026-11-22T12:15:00Z


def test_sts_standin_refuses_a_wrong_long_term_secret(standins, monkeypatch):
    from aliyunsdkcore.acs_exception.exceptions import ServerException

    monkeypatch.setenv("KEFU_ALIYUN_ACCESS_KEY_SECRET", "not-the-secret")
    settings.cache_clear()
    with pytest.raises(ServerException) as refused:
        aliyun_sts.assume_role()
    # the SDK recognises the server's string to sign and names the cause
    assert refused.value.get_error_code() == "InvalidAccessKeySecret"


def test_chat_modules_do_not_import_oss2_or_the_sts_sdk():
    code = ("import sys, app, chalicelib.protocol, chalicelib.uploads, chalicelib.attachments; "
            "heavy = [m for m in ('oss2', 'aliyunsdkcore', 'aliyunsdksts') if m in sys.modules]; "
            "print(','.join(heavy))")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == ""
