"""Direct uploads: V4 PostObject grants signed with cached STS credentials, checked by the OSS
stand-in over real HTTP; signed downloads; the STS request and its caching."""
from __future__ import annotations

import base64
import hashlib
import hmac
import json
import pathlib
import subprocess
import sys
import time
import urllib.parse
from datetime import datetime, timezone

import oss2
import pytest
import requests

from chalicelib import aliyun_sts, uploads
from chalicelib.config import settings
from chalicelib.errors import KefuError
from local.oss_standin import start_standins

ROOT = pathlib.Path(__file__).resolve().parents[1]
RECORDED_ASSUME_ROLE = ROOT / "tests" / "fixtures" / "aliyun" / "assume_role_response.json"
BUCKET = "kefu-test-bucket"
REGION = "cn-hangzhou"
LONG_TERM_ID, LONG_TERM_SECRET = "LTAI-test", "long-term-secret-0123456789"
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 200


class Clock:
    """Real time moved by ``offset``: the stand-ins' clock in tests of expiry."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def standins(tmp_path, monkeypatch, clock):
    running = start_standins("127.0.0.1", str(tmp_path), BUCKET, LONG_TERM_ID, LONG_TERM_SECRET,
                             clock=clock, region=REGION)
    for name, value in {
        "KEFU_OSS_ENDPOINT": running.oss_endpoint, "KEFU_STS_ENDPOINT": running.sts_endpoint,
        "KEFU_OSS_BUCKET": BUCKET, "KEFU_OSS_REGION": REGION, "KEFU_OSS_PREFIX": "uploads/",
        "KEFU_STS_ROLE_ARN": "acs:ram::1000:role/kefu-uploads",
        "KEFU_ALIYUN_ACCESS_KEY_ID": LONG_TERM_ID, "KEFU_ALIYUN_ACCESS_KEY_SECRET": LONG_TERM_SECRET,
    }.items():
        monkeypatch.setenv(name, value)
    settings.cache_clear()
    monkeypatch.setattr(aliyun_sts, "credentials", aliyun_sts.CredentialCache())
    yield running
    running.stop()


def _grant(**overrides):
    args = dict(site_id="site1", conversation_id="conv1", file_name="photo.png", content_type="image/png",
                size=len(PNG), max_bytes=1024, allowed_types=["image/*", "application/pdf"])
    args.update(overrides)
    return uploads.create_upload_grant(**args)


def _post(grant, body=PNG, **field_changes):
    """The browser's form POST: the grant's fields in order, then the file."""
    fields = {**grant["fields"], **field_changes}
    fields = {k: v for k, v in fields.items() if v is not None}
    return requests.post(grant["url"], data=fields, files={"file": ("photo.png", body, "image/png")}, timeout=10)


def _error_code(response):
    return response.text.split("<Code>")[1].split("</Code>")[0] if "<Code>" in response.text else None


def _policy(grant):
    return json.loads(base64.b64decode(grant["fields"]["policy"]))


def _reencoded_policy(grant, **changes):
    document = {**_policy(grant), **changes}
    return base64.b64encode(json.dumps(document, separators=(",", ":")).encode()).decode()


def _resigned(grant, document):
    """The grant's form with another policy, signed properly with the same credentials."""
    creds = aliyun_sts.credentials.get()
    policy = base64.b64encode(json.dumps(document).encode()).decode()
    key = uploads.v4_signing_key(creds.access_key_secret, grant["fields"]["x-oss-date"][:8], REGION)
    return {"policy": policy, "x-oss-signature": hmac.new(key, policy.encode(), hashlib.sha256).hexdigest()}


# ---- the upload, end to end ----------------------------------------------------------------

def test_grant_upload_and_signed_download(standins):
    grant = _grant()
    assert grant["method"] == "POST" and grant["headers"] == {}
    assert grant["url"] == f"{standins.oss_endpoint}/{BUCKET}/"
    assert grant["key"].startswith("uploads/pending/site1/conv1/") and grant["key"].endswith("/photo.png")
    assert grant["max_bytes"] == len(PNG)  # the form takes no more than the declared size
    fields = grant["fields"]
    assert fields["x-oss-signature-version"] == "OSS4-HMAC-SHA256"
    assert fields["x-oss-credential"].endswith(f"/{REGION}/oss/aliyun_v4_request")
    assert fields["x-oss-credential"].startswith("STS.")
    assert LONG_TERM_SECRET not in json.dumps(grant) and LONG_TERM_ID not in json.dumps(grant)
    assert grant["expires_at"] == pytest.approx(time.time() + settings().upload_url_ttl, abs=5)
    response = _post(grant)
    assert response.status_code == 201, response.text
    assert uploads.object_size(grant["key"]) == len(PNG)
    download = uploads.signed_download_url(grant["key"], "photo.png", "image/png")
    query = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(download["url"]).query))
    assert query["x-oss-signature-version"] == "OSS4-HMAC-SHA256" and f"/{REGION}/oss/" in query["x-oss-credential"]
    assert "x-oss-security-token" in query and "OSSAccessKeyId" not in query
    assert query["response-content-disposition"] == "inline"
    got = requests.get(download["url"], timeout=10)
    assert got.status_code == 200 and got.content == PNG and got.headers["Content-Type"] == "image/png"
    assert got.headers["X-Content-Type-Options"] == "nosniff"
    assert uploads.object_size(grant["key"].replace("photo.png", "other.png")) is None


def test_policy_pins_everything_the_form_carries(standins):
    grant = _grant()
    fields, conditions = grant["fields"], _policy(grant)["conditions"]
    assert {"bucket": BUCKET} in conditions
    assert ["eq", "$key", grant["key"]] in conditions
    assert ["eq", "$Content-Type", "image/png"] in conditions
    assert ["content-length-range", 1, len(PNG)] in conditions  # the declared size, not the site's limit
    assert ["eq", "$x-oss-meta-name", "photo.png"] in conditions
    assert ["eq", "$x-oss-forbid-overwrite", "true"] in conditions
    for name in ("x-oss-signature-version", "x-oss-credential", "x-oss-date", "x-oss-security-token"):
        assert {name: fields[name]} in conditions
    expiration = datetime.strptime(_policy(grant)["expiration"], "%Y-%m-%dT%H:%M:%S.000Z")
    assert expiration.replace(tzinfo=timezone.utc).timestamp() == grant["expires_at"]


@pytest.mark.parametrize("change,code,status", [
    ({"key": "uploads/site1/conv1/0123456789abcdef0123456789abcdef/evil.png"}, "AccessDenied", 403),
    ({"Content-Type": "text/html"}, "AccessDenied", 403),
    ({"x-oss-security-token": None}, "AccessDenied", 403),
    ({"x-oss-security-token": "CAISforged"}, "InvalidSecurityToken", 403),
    ({"x-oss-signature": "0" * 64}, "SignatureDoesNotMatch", 403),
    ({"success_action_status": "200"}, "AccessDenied", 403),
    ({"x-oss-forbid-overwrite": "false"}, "AccessDenied", 403),
    ({"x-oss-forbid-overwrite": None}, "AccessDenied", 403),
    ({"x-oss-signature-version": None, "OSSAccessKeyId": LONG_TERM_ID, "Signature": "AAAA"},
     "InvalidSecurityToken", 403),
])
def test_tampered_form_is_refused(standins, change, code, status):
    grant = _grant()
    response = _post(grant, **change)
    assert (response.status_code, _error_code(response)) == (status, code), response.text
    assert uploads.object_size(change.get("key") or grant["key"]) is None


def test_tampered_signing_scope_is_refused(standins):
    grant = _grant()
    fields = grant["fields"]
    other_second = fields["x-oss-date"][:-3] + ("01" if fields["x-oss-date"][-3:-1] == "00" else "00") + "Z"
    other_region = fields["x-oss-credential"].replace(f"/{REGION}/", "/cn-beijing/")
    other_key = fields["x-oss-credential"].replace("STS.", "STS.X", 1)
    longer = _reencoded_policy(grant, expiration="2099-01-01T00:00:00.000Z")
    refusals = {
        "x-oss-date": _post(grant, **{"x-oss-date": other_second}),
        "x-oss-credential region": _post(grant, **{"x-oss-credential": other_region}),
        "x-oss-credential key id": _post(grant, **{"x-oss-credential": other_key}),
        "policy": _post(grant, policy=longer),
    }
    codes = {part: (r.status_code, _error_code(r)) for part, r in refusals.items()}
    assert codes == {
        "x-oss-date": (403, "AccessDenied"),  # no longer what the policy pins
        "x-oss-credential region": (403, "AccessDenied"),
        "x-oss-credential key id": (403, "InvalidAccessKeyId"),
        "policy": (403, "SignatureDoesNotMatch"),
    }
    assert uploads.object_size(grant["key"]) is None
    assert _post(grant).status_code == 201  # the untouched form still works


def test_properly_signed_policies_are_still_checked(standins):
    """What OSS checks of a policy beyond its signature (the stand-in must not be laxer)."""
    grant = _grant()
    document = _policy(grant)
    without_token = {**document, "conditions": [c for c in document["conditions"]
                                                 if not (isinstance(c, dict) and "x-oss-security-token" in c)]}
    unknown_operator = {**document, "conditions": document["conditions"] + [["ends-with", "$key", ".png"]]}
    extra_field = {**document, "comment": "hello"}
    no_size_limit = {**document, "conditions": [c for c in document["conditions"]
                                                if not (isinstance(c, list) and c[0] == "content-length-range")]}
    results = {name: _post(grant, **_resigned(grant, doc)) for name, doc in [
        ("without token condition", without_token), ("unknown operator", unknown_operator),
        ("extra field", extra_field)]}
    assert {name: (r.status_code, _error_code(r)) for name, r in results.items()} == {
        "without token condition": (403, "AccessDenied"),
        "unknown operator": (400, "InvalidPolicyDocument"),
        "extra field": (400, "InvalidPolicyDocument"),
    }
    # a server that forgot content-length-range would get any size: OSS only enforces the policy
    assert _post(grant, body=b"x" * 5000, **_resigned(grant, no_size_limit)).status_code == 201


def test_body_over_the_declared_size_is_refused_by_oss_itself(standins):
    grant = _grant(size=100, max_bytes=300)  # the client claims 100 bytes, then sends more
    response = _post(grant, body=b"x" * 101)
    assert (response.status_code, _error_code(response)) == (400, "EntityTooLarge")
    assert uploads.object_size(grant["key"]) is None
    assert _post(grant, body=b"x" * 100).status_code == 201  # the declared size itself is allowed


def test_empty_body_is_refused(standins):
    response = _post(_grant(), body=b"")
    assert (response.status_code, _error_code(response)) == (400, "EntityTooSmall")


def test_expired_policy_is_refused(standins, clock):
    grant = _grant()
    clock.offset = settings().upload_url_ttl + 5
    response = _post(grant)
    assert response.status_code == 403 and "expired" in response.text.lower()
    assert uploads.object_size(grant["key"]) is None


def test_one_grant_uploads_one_object(standins):
    grant = _grant()
    assert _post(grant).status_code == 201
    other = grant["key"].rsplit("/", 1)[0] + "/second.png"
    assert _post(grant, key=other).status_code == 403
    assert uploads.object_size(other) is None
    replay = _post(grant, body=b"\x89PNG replaced")  # the same form again, the same key
    assert (replay.status_code, _error_code(replay)) == (409, "FileAlreadyExists")
    assert requests.get(uploads.signed_download_url(grant["key"])["url"], timeout=10).content == PNG


def test_expired_download_url_is_refused(standins, clock):
    grant = _grant()
    assert _post(grant).status_code == 201
    url = uploads.signed_download_url(grant["key"])["url"]
    clock.offset = settings().download_url_ttl + 5
    response = requests.get(url, timeout=10)
    assert (response.status_code, _error_code(response)) == (403, "AccessDenied")


def test_session_policy_limits_temporary_credentials_to_the_prefix(standins):
    creds = aliyun_sts.credentials.get()
    bucket = uploads._bucket(creds)
    bucket.put_object("uploads/site1/conv1/x/ok.txt", b"ok")  # inside the prefix: allowed
    with pytest.raises(oss2.exceptions.AccessDenied):
        bucket.put_object("private/secrets.txt", b"no")
    with pytest.raises(oss2.exceptions.AccessDenied):
        bucket.delete_object("uploads/site1/conv1/x/ok.txt")  # not an action the session allows


# ---- validation ----------------------------------------------------------------------------

@pytest.mark.parametrize("overrides,code,status", [
    ({"size": 2000, "max_bytes": 1000}, "upload_too_large", 413),
    ({"size": 0}, "invalid_size", 400),
    ({"size": -5}, "invalid_size", 400),
    ({"file_name": "a.exe", "content_type": "application/x-msdownload"}, "upload_type_not_allowed", 415),
    ({"content_type": "image/svg+xml"}, "upload_type_not_allowed", 415),  # a wildcard admits no active type
    ({"content_type": "image/png; x=1"}, "upload_type_not_allowed", 415),
    ({"content_type": ""}, "upload_type_not_allowed", 415),
    ({"file_name": ""}, "invalid_file_name", 400),
    ({"file_name": "\x00\u202e\u2066 \t"}, "invalid_file_name", 400),  # nothing visible once cleaned
    ({"file_name": "x" * 256}, "invalid_file_name", 400),
    ({"conversation_id": "../conv2"}, "invalid_conversation_id", 400),
])
def test_grant_refusals_are_typed(overrides, code, status):
    with pytest.raises(KefuError) as refused:
        _grant(**overrides)
    assert (refused.value.code, refused.value.status) == (code, status)


def test_type_allowlist():
    assert uploads.type_allowed("image/png", ["image/*"])
    assert uploads.type_allowed("IMAGE/PNG", ["image/*"])
    assert not uploads.type_allowed("imagex/png", ["image/*"])
    assert uploads.type_allowed("application/pdf", ["image/*", "application/pdf"])
    assert not uploads.type_allowed("image/svg+xml", ["image/*", "*/*"])
    assert uploads.type_allowed("image/svg+xml", ["image/svg+xml"])  # named exactly: the site's choice


@pytest.mark.parametrize("given,kept", [
    ("photo.png", "photo.png"),
    ("My Holiday (1).JPG", "My_Holiday_1.JPG"),
    ("截图 2024.png", "2024.png"),
    ("截图.png", "file.png"),
    ("../../etc/passwd", "passwd"),
    ("C:\\Users\\ann\\report.final.pdf", "report.final.pdf"),
    (".bashrc", "file.bashrc"),
    ("noextension", "noextension"),
])
def test_file_names_are_sanitized_into_the_key(given, kept):
    assert uploads._sanitize(given) == kept


@pytest.mark.parametrize("given,shown", [
    ("photo.png", "photo.png"),
    ("invoice\u202efdp.exe", "invoicefdp.exe"),
    ("\u2066a\u2069 b\u200e\u200f\u061c.txt", "a b.txt"),
    ("tab\there\r\nand\x85there.txt", "tab here and there.txt"),
    ("bell\x07\x00\x1f\x7f\x9f.txt", "bell.txt"),
    ("zero\u200bwidth\ufeff.txt", "zerowidth.txt"),
    ("family \U0001F468\u200d\U0001F469.png", "family \U0001F468\u200d\U0001F469.png"),  # ZWJ kept
    ("C:\\Users\\ann\\report.pdf", "report.pdf"),
    ("  spaced   out .txt ", "spaced out .txt"),
    ("\u202e\u2066\x00", ""),
    ("e\u0301.txt", "\u00e9.txt"),  # NFC
])
def test_names_are_cleaned_for_display(given, shown):
    assert uploads.clean_name(given) == shown


@pytest.mark.parametrize("name,content_type,shown", [
    ("cat.png", "image/png", "cat.png"),
    ("cat.PNG", "image/png", "cat.PNG"),
    ("scan.jpeg", "image/jpeg", "scan.jpeg"),
    ("invoice.pdf.exe", "application/pdf", "invoice.pdf.exe.pdf"),
    ("run.bat", "text/plain", "run.bat.txt"),  # text/plain never keeps a runnable extension
    ("README", "text/plain", "README.txt"),
    (".txt", "text/plain", ".txt.txt"),
    ("data.bin", "application/octet-stream", "data.bin"),
    ("tool.exe", "application/octet-stream", "tool.exe.bin"),
    ("x" * 255, "application/pdf", "x" * 251 + ".pdf"),
])
def test_display_names_carry_an_extension_of_their_type(name, content_type, shown):
    assert uploads.display_name(name, content_type) == shown


def test_content_disposition():
    assert uploads.content_disposition("cat.png", "image/png") == "inline"
    assert uploads.content_disposition("cat.svg", "image/svg+xml") == "attachment; filename*=UTF-8''cat.svg"
    assert uploads.content_disposition("报价 1.pdf", "application/pdf") == \
        "attachment; filename*=UTF-8''%E6%8A%A5%E4%BB%B7%201.pdf"
    assert uploads.content_disposition("a\"b;c.txt", "text/plain") == "attachment; filename*=UTF-8''a%22b%3Bc.txt"


def test_pending_and_final_keys():
    pending = "uploads/pending/site1/conv1/0123456789abcdef0123456789abcdef/a.png"
    final = "uploads/site1/conv1/0123456789abcdef0123456789abcdef/a.png"
    assert uploads.final_key(pending, "site1", "conv1") == final
    assert uploads.final_key(final, "site1", "conv1") == final
    assert uploads.pending_key(final, "site1", "conv1") == pending
    assert uploads.final_key(pending, "site1", "conv2") is None
    assert uploads.final_key(pending.replace("site1", "site2"), "site1", "conv1") is None
    assert uploads.final_key("uploads/pending/site1/conv1/../x/a.png", "site1", "conv1") is None
    assert uploads.final_key(None, "site1", "conv1") is None
    assert not uploads.key_belongs_to(pending, "site1", "conv1")  # not attached: no download
    # "pending" can never be a site that holds uploads: its files would sit under the lifecycle rule
    assert not uploads.key_belongs_to("uploads/pending/conv1/0123456789abcdef/a.png", "pending", "conv1")
    with pytest.raises(KefuError) as refused:
        _grant(site_id="pending")
    assert refused.value.code == "invalid_conversation_id"


def test_promote_moves_an_upload_out_of_pending_once(standins):
    grant = _grant()
    assert _post(grant).status_code == 201
    final = uploads.final_key(grant["key"], "site1", "conv1")
    stored = uploads.head_object(grant["key"])
    assert (stored.size, stored.content_type, stored.name) == (len(PNG), "image/png", "photo.png")
    assert uploads.promote(grant["key"], final) is True
    assert uploads.head_object(grant["key"]) is None
    moved = uploads.head_object(final)
    assert (moved.size, moved.content_type, moved.name, moved.etag) == (len(PNG), "image/png", "photo.png", stored.etag)
    assert _post(grant).status_code == 201  # a replay of the form re-creates the pending object...
    assert uploads.promote(grant["key"], final) is False  # ...a second attach keeps the first
    assert uploads.head_object(grant["key"]) is None
    assert requests.get(uploads.signed_download_url(final)["url"], timeout=10).content == PNG


def test_key_belongs_only_to_its_conversation():
    key = "uploads/site1/conv1/0123456789abcdef0123456789abcdef/a.png"
    assert uploads.key_belongs_to(key, "site1", "conv1")
    assert not uploads.key_belongs_to(key, "site1", "conv2")
    assert not uploads.key_belongs_to(key, "site2", "conv1")
    assert not uploads.key_belongs_to("uploads/site1/conv1/../conv2/x/a.png", "site1", "conv1")
    assert not uploads.key_belongs_to(key + "/more", "site1", "conv1")
    assert not uploads.key_belongs_to(key, "site1/conv1", "")


@pytest.mark.parametrize("endpoint", ["http://127.0.0.1:9000", "https://oss-cn-hangzhou.aliyuncs.com",
                                      "http://localhost:8080"])
def test_bucket_url_is_where_oss2_addresses_the_bucket(endpoint):
    expected = oss2.Bucket(oss2.AnonymousAuth(), endpoint, BUCKET)._make_url(BUCKET, "")
    assert uploads.bucket_url(endpoint, BUCKET) == expected


# ---- STS: the request, and one call per many grants ----------------------------------------

class FakeSts:
    """An AcsClient stand-in answering with the recorded AssumeRole response, its Expiration set
    DurationSeconds after the injected clock's now."""

    def __init__(self, clock) -> None:
        self.clock = clock
        self.requests = []

    def do_action_with_exception(self, request):
        self.requests.append(request)
        body = json.loads(RECORDED_ASSUME_ROLE.read_text())
        expires = self.clock() + int(request.get_query_params()["DurationSeconds"])
        body["Credentials"]["Expiration"] = datetime.fromtimestamp(expires, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        body["Credentials"]["AccessKeyId"] += str(len(self.requests))
        return json.dumps(body).encode()


@pytest.fixture
def upload_settings(monkeypatch):
    for name, value in {"KEFU_OSS_ENDPOINT": "https://oss-cn-hangzhou.aliyuncs.com", "KEFU_OSS_BUCKET": "bkt",
                        "KEFU_OSS_PREFIX": "uploads/", "KEFU_STS_ROLE_ARN": "acs:ram::1000:role/kefu-uploads",
                        "KEFU_UPLOAD_URL_TTL": "300", "KEFU_DOWNLOAD_URL_TTL": "600"}.items():
        monkeypatch.setenv(name, value)
    settings.cache_clear()


def test_sts_request_against_a_recorded_response_shape(upload_settings):
    """The AssumeRole request we make, and parsing the response shape STS returns, offline."""
    seen = {}

    class RecordingClient:
        def do_action_with_exception(self, request):
            seen["action"] = request.get_action_name()
            seen["version"] = request.get_version()
            seen["params"] = request.get_query_params()
            return RECORDED_ASSUME_ROLE.read_bytes()

    creds = aliyun_sts.assume_role(RecordingClient())
    assert (seen["action"], seen["version"]) == ("AssumeRole", "2015-04-01")
    assert seen["params"]["RoleArn"] == "acs:ram::1000:role/kefu-uploads"
    assert seen["params"]["RoleSessionName"] == "kefu-uploads"
    assert seen["params"]["DurationSeconds"] == 900
    policy = json.loads(seen["params"]["Policy"])
    assert policy == {"Version": "1", "Statement": [
        {"Effect": "Allow", "Action": ["oss:PutObject", "oss:GetObject"], "Resource": ["acs:oss:*:*:bkt/uploads/*"]},
        {"Effect": "Allow", "Action": ["oss:DeleteObject"], "Resource": ["acs:oss:*:*:bkt/uploads/pending/*"]}]}
    assert creds.access_key_id.startswith("STS.") and creds.security_token.startswith("CAIS")
    assert creds.expires_at == 1795349700.0  # 2026-11-22T12:15:00Z


def test_sts_is_called_once_for_many_grants_and_again_near_expiry(upload_settings):
    now = [1_800_000_000.0]
    sts = FakeSts(lambda: now[0])
    cache = aliyun_sts.CredentialCache(client=sts, clock=lambda: now[0])
    aliyun_sts.credentials, saved = cache, aliyun_sts.credentials
    try:
        grants = [_grant() for _ in range(25)]
        assert len(sts.requests) == 1
        assert {g["fields"]["x-oss-credential"].split("/")[0] for g in grants} == {"STS.NUgYrLnoC37mZZCNnAbez****1"}
        # a grant lives 300 s: the credentials serve grants until 300 s + the margin before expiry
        now[0] += 900 - 300 - aliyun_sts.REFRESH_MARGIN_SECONDS - 1
        _grant()
        assert len(sts.requests) == 1
        now[0] += 2
        fresh = _grant()
        assert len(sts.requests) == 2 and fresh["fields"]["x-oss-credential"].startswith("STS.NUgYrLnoC37mZZCNnAbez****2")
        for _ in range(10):
            _grant()
        assert len(sts.requests) == 2
    finally:
        aliyun_sts.credentials = saved


def test_nothing_signed_outlives_its_credentials(upload_settings, monkeypatch):
    """A download URL (600 s) needs fresher credentials than a grant (300 s); a lifetime longer
    than STS can give is shortened, not a reason to call STS on every request."""
    now = [1_800_000_000.0]
    sts = FakeSts(lambda: now[0])
    cache = aliyun_sts.CredentialCache(client=sts, clock=lambda: now[0])
    monkeypatch.setattr(aliyun_sts, "credentials", cache)
    _grant()
    now[0] += 900 - 600 - aliyun_sts.REFRESH_MARGIN_SECONDS + 1  # too late for a 600 s URL
    creds = cache.get(valid_for=300)
    assert len(sts.requests) == 1
    creds = cache.get(valid_for=600)
    assert len(sts.requests) == 2 and creds.expires_at - now[0] == 900
    monkeypatch.setenv("KEFU_UPLOAD_URL_TTL", "3600")
    settings.cache_clear()
    for _ in range(5):
        grant = _grant()
        assert grant["expires_at"] <= cache.get().expires_at - aliyun_sts.REFRESH_MARGIN_SECONDS
    assert len(sts.requests) == 2


def test_sts_standin_counts_one_call_for_many_grants_and_downloads(standins):
    grant = _grant()
    assert _post(grant).status_code == 201
    for _ in range(10):
        _grant()
        uploads.signed_download_url(grant["key"])
        uploads.object_size(grant["key"])
    assert standins.sts.calls == 1


def test_sts_standin_refuses_replayed_and_stale_requests():
    from local.credentials import Credential, CredentialRegistry
    from local.sts_standin import StsError, StsStandIn, rpc_signature

    registry = CredentialRegistry()
    registry.add(Credential(LONG_TERM_ID, LONG_TERM_SECRET))
    sts = StsStandIn(registry)

    def signed(timestamp, nonce):
        params = {"Action": "AssumeRole", "AccessKeyId": LONG_TERM_ID, "SignatureMethod": "HMAC-SHA1",
                  "SignatureVersion": "1.0", "SignatureNonce": nonce, "Timestamp": timestamp}
        return {**params, "Signature": rpc_signature(LONG_TERM_SECRET, "POST", params)}

    now = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert sts._verify("POST", signed(now, "n1")).access_key_id == LONG_TERM_ID
    with pytest.raises(StsError) as replayed:
        sts._verify("POST", signed(now, "n1"))
    assert replayed.value.code == "SignatureNonceUsed"
    with pytest.raises(StsError) as stale:
        sts._verify("POST", signed("2020-01-01T00:00:00Z", "n2"))
    assert stale.value.code == "InvalidTimeStamp.Expired"
    with pytest.raises(StsError) as forged:
        sts._verify("POST", {**signed(now, "n3"), "RoleArn": "acs:ram::1:role/admin"})  # added after signing
    assert forged.value.code == "SignatureDoesNotMatch"


def test_app_factories_serve(tmp_path):
    """make_oss_app / make_sts_app, as a runner of its own would mount them."""
    import asyncio

    from aiohttp.test_utils import TestClient, TestServer

    from local.credentials import Credential, CredentialRegistry
    from local.oss_standin import make_oss_app
    from local.sts_standin import make_sts_app

    registry = CredentialRegistry()
    registry.add(Credential(LONG_TERM_ID, LONG_TERM_SECRET))

    async def probe(app, path):
        async with TestClient(TestServer(app)) as client:
            response = await client.get(path)
            return response.status, await response.text()

    oss_status, oss_body = asyncio.run(probe(make_oss_app(str(tmp_path), BUCKET, registry), f"/{BUCKET}/a.txt"))
    assert oss_status == 403 and "<Code>AccessDenied</Code>" in oss_body
    sts_status, sts_body = asyncio.run(probe(make_sts_app(registry), "/?Action=AssumeRole&AccessKeyId=nobody"))
    assert sts_status == 404 and "InvalidAccessKeyId" in sts_body


def test_sts_standin_refuses_a_wrong_long_term_secret(standins, monkeypatch):
    from aliyunsdkcore.acs_exception.exceptions import ServerException

    monkeypatch.setenv("KEFU_ALIYUN_ACCESS_KEY_SECRET", "not-the-secret")
    settings.cache_clear()
    with pytest.raises(ServerException) as refused:
        aliyun_sts.assume_role()
    # the SDK recognises the server's string to sign and names the cause
    assert refused.value.get_error_code() == "InvalidAccessKeySecret"


def test_unconfigured_uploads_say_so(monkeypatch):
    monkeypatch.delenv("KEFU_OSS_ENDPOINT", raising=False)
    settings.cache_clear()
    try:
        with pytest.raises(KefuError) as refused:
            _grant()
    finally:
        settings.cache_clear()
    assert (refused.value.code, refused.value.status) == ("uploads_not_configured", 503)


def test_chat_modules_do_not_import_oss2_or_the_sts_sdk():
    code = ("import sys, app, chalicelib.protocol, chalicelib.uploads, chalicelib.aliyun_sts, "
            "chalicelib.attachments; "
            "heavy = [m for m in ('oss2', 'aliyunsdkcore', 'aliyunsdksts') if m in sys.modules]; "
            "print(','.join(heavy))")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == ""


def test_attachments_stored_before_cleaning_are_shown_clean():
    from chalicelib import messages
    from chalicelib.models import Message

    legacy = {"key": "uploads/site1/conv1/0123456789abcdef/invoice.exe", "name": "invoice\u202efdp.exe",
              "size": 10, "content_type": "application/pdf"}
    view = messages.message_view(Message("conv1", "c1", message_id="m1", sender_role="visitor", sender_id="v1",
                                         attachment=legacy, created_at=1))
    assert view["attachment"] == {**legacy, "name": "invoicefdp.exe"}  # and no URL: the REST route signs
