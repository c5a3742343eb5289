"""The OSS stand-in accepts exactly what oss2 signs, and refuses each signed part changed."""
from __future__ import annotations

import urllib.parse

import oss2
import pytest
import requests

from chalicelib import aliyun_sts
from tests.test_uploads import BUCKET, LONG_TERM_ID, LONG_TERM_SECRET, clock, standins  # noqa: F401 (fixtures)

KEY = "uploads/site1/conv1/abcdef0123456789/report.txt"


@pytest.fixture
def sts_bucket(standins):  # noqa: F811
    creds = aliyun_sts.credentials.get()
    auth = oss2.StsAuth(creds.access_key_id, creds.access_key_secret, creds.security_token)
    return oss2.Bucket(auth, standins.oss_endpoint, BUCKET)


def _code(response):
    return response.text.split("<Code>")[1].split("</Code>")[0] if "<Code>" in response.text else response.status_code


def _with_param(url, name, value):
    parts = urllib.parse.urlsplit(url)
    query = dict(urllib.parse.parse_qsl(parts.query, keep_blank_values=True))
    query[name] = value
    return urllib.parse.urlunsplit(parts._replace(query=urllib.parse.urlencode(query)))


def _flip(text):
    return ("B" if text[0] != "B" else "C") + text[1:]


def test_header_signed_requests_from_oss2_are_accepted(sts_bucket):
    sts_bucket.put_object(KEY, b"hello", headers={"Content-Type": "text/plain", "x-oss-meta-author": "ann"})
    assert sts_bucket.get_object(KEY).read() == b"hello"
    assert sts_bucket.head_object(KEY).content_length == 5


def test_header_signed_with_a_wrong_secret_is_refused(standins):  # noqa: F811
    creds = aliyun_sts.credentials.get()
    bad = oss2.Bucket(oss2.StsAuth(creds.access_key_id, "wrong-secret", creds.security_token),
                      standins.oss_endpoint, BUCKET)
    with pytest.raises(oss2.exceptions.ServerError) as refused:
        bad.put_object(KEY, b"x")
    assert refused.value.code == "SignatureDoesNotMatch"


def test_signed_put_url_from_oss2_accepted_and_each_signed_part_checked(sts_bucket):
    headers = {"Content-Type": "text/plain", "x-oss-meta-purpose": "test"}
    url = sts_bucket.sign_url("PUT", KEY, 60, headers=headers, slash_safe=True)
    assert requests.put(url, data=b"body", headers=headers, timeout=10).status_code == 200

    refused = {
        "key": requests.put(url.replace("report.txt", "report.exe"), data=b"x", headers=headers, timeout=10),
        "content type": requests.put(url, data=b"x", headers={**headers, "Content-Type": "text/html"}, timeout=10),
        "signed header": requests.put(url, data=b"x", headers={**headers, "x-oss-meta-purpose": "tesT"}, timeout=10),
        "security token": requests.put(_with_param(url, "security-token", _flip(
            dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(url).query))["security-token"])),
            data=b"x", headers=headers, timeout=10),
        "signature": requests.put(_with_param(url, "Signature", _flip(
            dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(url).query))["Signature"])),
            data=b"x", headers=headers, timeout=10),
        "expiry": requests.put(_with_param(url, "Expires", str(int(
            dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(url).query))["Expires"]) + 1)),
            data=b"x", headers=headers, timeout=10),
        "method": requests.get(url, timeout=10),
    }
    codes = {part: _code(response) for part, response in refused.items()}
    assert codes == {
        "key": "SignatureDoesNotMatch", "content type": "SignatureDoesNotMatch",
        "signed header": "SignatureDoesNotMatch", "security token": "InvalidSecurityToken",
        "signature": "SignatureDoesNotMatch", "expiry": "SignatureDoesNotMatch",
        "method": "SignatureDoesNotMatch",
    }
    assert sts_bucket.get_object(KEY).read() == b"body"  # nothing refused overwrote it


def test_signed_get_url_expires(sts_bucket, clock):  # noqa: F811
    sts_bucket.put_object(KEY, b"abc")
    url = sts_bucket.sign_url("GET", KEY, 30, slash_safe=True)
    assert requests.get(url, timeout=10).content == b"abc"
    clock.offset = 31
    assert _code(requests.get(url, timeout=10)) == "AccessDenied"


def test_expired_temporary_credentials_are_refused(sts_bucket, clock):  # noqa: F811
    sts_bucket.put_object(KEY, b"abc")
    url = sts_bucket.sign_url("GET", KEY, 3600, slash_safe=True)  # the URL outlives the credentials
    clock.offset = aliyun_sts.DURATION_SECONDS + 1
    assert _code(requests.get(url, timeout=10)) == "SecurityTokenExpired"


def test_unknown_key_and_anonymous_requests_are_refused(standins):  # noqa: F811
    ghost = oss2.Bucket(oss2.Auth("LTAI-nobody", "x"), standins.oss_endpoint, BUCKET)
    with pytest.raises(oss2.exceptions.ServerError) as refused:
        ghost.get_object(KEY)
    assert refused.value.code == "InvalidAccessKeyId"
    assert _code(requests.get(f"{standins.oss_endpoint}/{BUCKET}/{KEY}", timeout=10)) == "AccessDenied"


def test_long_term_key_works_without_a_token(standins):  # noqa: F811
    owner = oss2.Bucket(oss2.Auth(LONG_TERM_ID, LONG_TERM_SECRET), standins.oss_endpoint, BUCKET)
    owner.put_object("anything/at/all.txt", b"owner")
    assert owner.get_object("anything/at/all.txt").read() == b"owner"
