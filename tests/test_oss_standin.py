"""The OSS stand-in accepts exactly what oss2 signs (V4, and V1), and refuses each signed part changed."""
from __future__ import annotations

import urllib.parse

import oss2
import pytest
import requests
from oss2.credentials import StaticCredentialsProvider

from chalicelib import aliyun_sts
from tests.test_uploads import BUCKET, LONG_TERM_ID, LONG_TERM_SECRET, REGION, clock, standins  # noqa: F401 (fixtures)

KEY = "uploads/site1/conv1/abcdef0123456789/report.txt"


def _v4(endpoint, creds, region=REGION, secret=None):
    auth = oss2.ProviderAuthV4(StaticCredentialsProvider(creds.access_key_id, secret or creds.access_key_secret,
                                                         creds.security_token))
    return oss2.Bucket(auth, endpoint, BUCKET, region=region)


@pytest.fixture
def creds(standins):  # noqa: F811
    return aliyun_sts.credentials.get()


@pytest.fixture
def v4_bucket(standins, creds):  # noqa: F811
    return _v4(standins.oss_endpoint, creds)


@pytest.fixture
def v1_bucket(standins, creds):  # noqa: F811
    return oss2.Bucket(oss2.StsAuth(creds.access_key_id, creds.access_key_secret, creds.security_token),
                       standins.oss_endpoint, BUCKET)


def _code(response):
    return response.text.split("<Code>")[1].split("</Code>")[0] if "<Code>" in response.text else response.status_code


def _query(url):
    return dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(url).query))


def _with_param(url, name, value):
    parts = urllib.parse.urlsplit(url)
    query = dict(urllib.parse.parse_qsl(parts.query, keep_blank_values=True))
    if value is None:
        query.pop(name, None)
    else:
        query[name] = value
    return urllib.parse.urlunsplit(parts._replace(query=urllib.parse.urlencode(query, quote_via=urllib.parse.quote)))


def _other_second(timestamp):
    """The same yyyymmddThhmmssZ with another second (same day: the credential scope still fits)."""
    return timestamp[:-3] + ("01" if timestamp[-3:-1] == "00" else "00") + "Z"


def _flip(text):
    return ("B" if text[0] != "B" else "C") + text[1:]


# ---- V4 ------------------------------------------------------------------------------------

def test_v4_header_signed_requests_from_oss2_are_accepted(v4_bucket):
    v4_bucket.put_object(KEY, b"hello", headers={"Content-Type": "text/plain", "x-oss-meta-author": "ann"})
    assert v4_bucket.get_object(KEY).read() == b"hello"
    assert v4_bucket.head_object(KEY).content_length == 5
    assert v4_bucket.object_exists(KEY) and not v4_bucket.object_exists(KEY + ".missing")


def test_v4_header_signed_with_a_wrong_secret_or_region_is_refused(standins, creds):  # noqa: F811
    with pytest.raises(oss2.exceptions.ServerError) as wrong_secret:
        _v4(standins.oss_endpoint, creds, secret="wrong-secret").put_object(KEY, b"x")
    assert wrong_secret.value.code == "SignatureDoesNotMatch"
    with pytest.raises(oss2.exceptions.ServerError) as wrong_region:
        _v4(standins.oss_endpoint, creds, region="cn-beijing").put_object(KEY, b"x")
    assert wrong_region.value.code == "AccessDenied"


def test_v4_signed_put_url_from_oss2_accepted_and_each_signed_part_checked(v4_bucket):
    headers = {"Content-Type": "text/plain", "x-oss-meta-purpose": "test", "Content-Disposition": "attachment"}
    url = v4_bucket.sign_url("PUT", KEY, 60, headers=headers, slash_safe=True,
                             additional_headers=["content-disposition"])
    query = _query(url)
    assert query["x-oss-additional-headers"] == "content-disposition"
    assert requests.put(url, data=b"body", headers=headers, timeout=10).status_code == 200

    def put(target=url, **header_changes):
        return requests.put(target, data=b"x", headers={**headers, **header_changes}, timeout=10)

    refused = {
        "key": put(url.replace("report.txt", "report.exe")),
        "content type": put(**{"Content-Type": "text/html"}),
        "signed x-oss header": put(**{"x-oss-meta-purpose": "tesT"}),
        "additional header": put(**{"Content-Disposition": "inline"}),
        "additional header list": put(_with_param(url, "x-oss-additional-headers", None)),
        "security token": put(_with_param(url, "x-oss-security-token", _flip(query["x-oss-security-token"]))),
        "signature": put(_with_param(url, "x-oss-signature", _flip(query["x-oss-signature"]))),
        "expiry": put(_with_param(url, "x-oss-expires", str(int(query["x-oss-expires"]) + 1))),
        "date": put(_with_param(url, "x-oss-date", _other_second(query["x-oss-date"]))),
        "credential region": put(_with_param(url, "x-oss-credential",
                                             query["x-oss-credential"].replace(REGION, "cn-beijing"))),
        "method": requests.get(url, timeout=10),
    }
    codes = {part: _code(response) for part, response in refused.items()}
    assert codes == {
        "key": "SignatureDoesNotMatch", "content type": "SignatureDoesNotMatch",
        "signed x-oss header": "SignatureDoesNotMatch", "additional header": "SignatureDoesNotMatch",
        "additional header list": "SignatureDoesNotMatch", "security token": "InvalidSecurityToken",
        "signature": "SignatureDoesNotMatch", "expiry": "SignatureDoesNotMatch",
        "date": "SignatureDoesNotMatch", "credential region": "AccessDenied",
        "method": "SignatureDoesNotMatch",
    }
    assert v4_bucket.get_object(KEY).read() == b"body"  # nothing refused overwrote it


def test_v4_url_signed_without_a_region_is_refused(standins, creds, v4_bucket):  # noqa: F811
    """oss2 signs a V4 URL with no region without complaint; OSS would refuse its scope."""
    v4_bucket.put_object(KEY, b"abc")
    no_region = _v4(standins.oss_endpoint, creds, region=None)
    url = no_region.sign_url("GET", KEY, 60, slash_safe=True)
    assert "//oss/aliyun_v4_request" in urllib.parse.unquote(url)
    response = requests.get(url, timeout=10)
    assert (response.status_code, _code(response)) == (400, "InvalidArgument")


def test_v4_signed_get_url_expires(v4_bucket, clock):  # noqa: F811
    v4_bucket.put_object(KEY, b"abc")
    url = v4_bucket.sign_url("GET", KEY, 30, slash_safe=True)
    assert requests.get(url, timeout=10).content == b"abc"
    clock.offset = 31
    assert _code(requests.get(url, timeout=10)) == "AccessDenied"


def test_v4_header_signed_request_too_far_from_server_time_is_refused(v4_bucket, clock):  # noqa: F811
    clock.offset = 16 * 60
    with pytest.raises(oss2.exceptions.ServerError) as refused:
        v4_bucket.put_object(KEY, b"late")
    assert refused.value.code == "RequestTimeTooSkewed"


def test_expired_temporary_credentials_are_refused(v4_bucket, clock):  # noqa: F811
    v4_bucket.put_object(KEY, b"abc")
    url = v4_bucket.sign_url("GET", KEY, 3600, slash_safe=True)  # the URL outlives the credentials
    clock.offset = aliyun_sts.DURATION_SECONDS + 1
    assert _code(requests.get(url, timeout=10)) == "SecurityTokenExpired"


def test_forbid_overwrite_header(v4_bucket):
    v4_bucket.put_object(KEY, b"first", headers={"x-oss-forbid-overwrite": "true"})
    with pytest.raises(oss2.exceptions.ServerError) as refused:
        v4_bucket.put_object(KEY, b"second", headers={"x-oss-forbid-overwrite": "true"})
    assert (refused.value.status, refused.value.code) == (409, "FileAlreadyExists")
    assert v4_bucket.get_object(KEY).read() == b"first"


# ---- V1 ------------------------------------------------------------------------------------

def test_v1_header_signed_requests_from_oss2_are_accepted(v1_bucket):
    v1_bucket.put_object(KEY, b"hello", headers={"Content-Type": "text/plain", "x-oss-meta-author": "ann"})
    assert v1_bucket.get_object(KEY).read() == b"hello"
    assert v1_bucket.head_object(KEY).content_length == 5


def test_v1_header_signed_with_a_wrong_secret_is_refused(standins, creds):  # noqa: F811
    bad = oss2.Bucket(oss2.StsAuth(creds.access_key_id, "wrong-secret", creds.security_token),
                      standins.oss_endpoint, BUCKET)
    with pytest.raises(oss2.exceptions.ServerError) as refused:
        bad.put_object(KEY, b"x")
    assert refused.value.code == "SignatureDoesNotMatch"


def test_v1_signed_put_url_from_oss2_accepted_and_each_signed_part_checked(v1_bucket):
    headers = {"Content-Type": "text/plain", "x-oss-meta-purpose": "test"}
    url = v1_bucket.sign_url("PUT", KEY, 60, headers=headers, slash_safe=True)
    query = _query(url)
    assert requests.put(url, data=b"body", headers=headers, timeout=10).status_code == 200

    def put(target=url, **header_changes):
        return requests.put(target, data=b"x", headers={**headers, **header_changes}, timeout=10)

    refused = {
        "key": put(url.replace("report.txt", "report.exe")),
        "content type": put(**{"Content-Type": "text/html"}),
        "signed header": put(**{"x-oss-meta-purpose": "tesT"}),
        "security token": put(_with_param(url, "security-token", _flip(query["security-token"]))),
        "signature": put(_with_param(url, "Signature", _flip(query["Signature"]))),
        "expiry": put(_with_param(url, "Expires", str(int(query["Expires"]) + 1))),
        "method": requests.get(url, timeout=10),
    }
    codes = {part: _code(response) for part, response in refused.items()}
    assert codes == {
        "key": "SignatureDoesNotMatch", "content type": "SignatureDoesNotMatch",
        "signed header": "SignatureDoesNotMatch", "security token": "InvalidSecurityToken",
        "signature": "SignatureDoesNotMatch", "expiry": "SignatureDoesNotMatch",
        "method": "SignatureDoesNotMatch",
    }
    assert v1_bucket.get_object(KEY).read() == b"body"


def test_v1_signed_get_url_expires(v1_bucket, clock):  # noqa: F811
    v1_bucket.put_object(KEY, b"abc")
    url = v1_bucket.sign_url("GET", KEY, 30, slash_safe=True)
    assert requests.get(url, timeout=10).content == b"abc"
    clock.offset = 31
    assert _code(requests.get(url, timeout=10)) == "AccessDenied"


# ---- who may do what -----------------------------------------------------------------------

def test_unknown_key_and_anonymous_requests_are_refused(standins):  # noqa: F811
    ghost = oss2.Bucket(oss2.Auth("LTAI-nobody", "x"), standins.oss_endpoint, BUCKET)
    with pytest.raises(oss2.exceptions.ServerError) as refused:
        ghost.get_object(KEY)
    assert refused.value.code == "InvalidAccessKeyId"
    assert _code(requests.get(f"{standins.oss_endpoint}/{BUCKET}/{KEY}", timeout=10)) == "AccessDenied"
    assert _code(requests.put(f"{standins.oss_endpoint}/{BUCKET}/{KEY}", data=b"x", timeout=10)) == "AccessDenied"


def test_temporary_key_without_its_token_is_refused(standins, creds):  # noqa: F811
    tokenless = oss2.Bucket(oss2.ProviderAuthV4(StaticCredentialsProvider(creds.access_key_id, creds.access_key_secret)),
                            standins.oss_endpoint, BUCKET, region=REGION)
    with pytest.raises(oss2.exceptions.ServerError) as refused:
        tokenless.put_object(KEY, b"x")
    assert refused.value.code == "AccessDenied"


def test_long_term_key_works_without_a_token(standins):  # noqa: F811
    owner = oss2.Bucket(oss2.AuthV4(LONG_TERM_ID, LONG_TERM_SECRET), standins.oss_endpoint, BUCKET, region=REGION)
    owner.put_object("anything/at/all.txt", b"owner")
    assert owner.get_object("anything/at/all.txt").read() == b"owner"


def test_other_bucket_is_not_there(standins, creds):  # noqa: F811
    other = oss2.Bucket(oss2.AuthV4(LONG_TERM_ID, LONG_TERM_SECRET), standins.oss_endpoint, "another-bucket",
                        region=REGION)
    with pytest.raises(oss2.exceptions.NoSuchBucket):
        other.put_object("a.txt", b"x")


# ---- metadata, copies, downloads' response headers ------------------------------------------

PENDING = "uploads/pending/site1/conv1/abcdef0123456789/report.txt"


def test_user_metadata_is_kept_and_returned(v4_bucket):
    v4_bucket.put_object(KEY, b"hello", headers={"Content-Type": "text/plain", "x-oss-meta-name": "a%20b.txt"})
    head = v4_bucket.head_object(KEY)
    assert head.headers["x-oss-meta-name"] == "a%20b.txt" and head.content_type == "text/plain"


def test_copy_object_with_temporary_credentials(v4_bucket):
    v4_bucket.put_object(PENDING, b"hello", headers={"Content-Type": "text/plain", "x-oss-meta-name": "r.txt"})
    etag = v4_bucket.head_object(PENDING).etag
    with pytest.raises(oss2.exceptions.ServerError) as stale:  # the source is not what was checked
        v4_bucket.copy_object(BUCKET, PENDING, KEY, headers={"x-oss-copy-source-if-match": '"0000"'})
    assert (stale.value.status, stale.value.code) == (412, "PreconditionFailed")
    v4_bucket.copy_object(BUCKET, PENDING, KEY, headers={"x-oss-copy-source-if-match": f'"{etag}"',
                                                         "x-oss-forbid-overwrite": "true"})
    copied = v4_bucket.head_object(KEY)
    assert (copied.content_type, copied.headers["x-oss-meta-name"], copied.etag) == ("text/plain", "r.txt", etag)
    assert v4_bucket.get_object(KEY).read() == b"hello"
    with pytest.raises(oss2.exceptions.ServerError) as again:
        v4_bucket.copy_object(BUCKET, PENDING, KEY, headers={"x-oss-forbid-overwrite": "true"})
    assert (again.value.status, again.value.code) == (409, "FileAlreadyExists")
    with pytest.raises(oss2.exceptions.NoSuchKey):
        v4_bucket.copy_object(BUCKET, PENDING + ".missing", KEY + ".2")
    with pytest.raises(oss2.exceptions.AccessDenied):  # the session policy covers the target too
        v4_bucket.copy_object(BUCKET, PENDING, "private/copy.txt")


def test_temporary_credentials_delete_only_in_the_pending_area(v4_bucket):
    v4_bucket.put_object(PENDING, b"a")
    v4_bucket.put_object(KEY, b"b")
    v4_bucket.delete_object(PENDING)
    assert not v4_bucket.object_exists(PENDING)
    with pytest.raises(oss2.exceptions.AccessDenied):
        v4_bucket.delete_object(KEY)
    assert v4_bucket.object_exists(KEY)


@pytest.mark.parametrize("signer", ["v4_bucket", "v1_bucket"])
def test_reads_are_answered_with_nosniff_and_signed_response_overrides(request, signer):
    bucket = request.getfixturevalue(signer)
    bucket.put_object(KEY, b"<script>alert(1)</script>", headers={"Content-Type": "text/plain"})
    plain = requests.get(bucket.sign_url("GET", KEY, 60, slash_safe=True), timeout=10)
    assert plain.headers["X-Content-Type-Options"] == "nosniff" and "Content-Disposition" not in plain.headers
    assert bucket.head_object(KEY).headers["X-Content-Type-Options"] == "nosniff"
    disposition = "attachment; filename*=UTF-8''%E6%8A%A5%E4%BB%B7.txt"
    url = bucket.sign_url("GET", KEY, 60, slash_safe=True, params={
        "response-content-disposition": disposition, "response-cache-control": "no-store"})
    got = requests.get(url, timeout=10)
    assert got.status_code == 200, got.text
    assert (got.headers["Content-Disposition"], got.headers["Cache-Control"]) == (disposition, "no-store")
    assert got.headers["Content-Type"] == "text/plain"
    # the overrides are signed: changing one breaks the signature
    name = "response-content-disposition"
    assert _code(requests.get(_with_param(url, name, "inline"), timeout=10)) == "SignatureDoesNotMatch"
    # OSS refuses to override the type on a GET (error 0017-00000902), signed or not
    typed = requests.get(bucket.sign_url("GET", KEY, 60, slash_safe=True,
                                         params={"response-content-type": "text/html"}), timeout=10)
    assert (typed.status_code, _code(typed)) == (400, "InvalidRequest")
    assert "Can not override response header on content-type" in typed.text


# ---- lifecycle -------------------------------------------------------------------------------

def _owner(standins):  # noqa: F811
    return oss2.Bucket(oss2.AuthV4(LONG_TERM_ID, LONG_TERM_SECRET), standins.oss_endpoint, BUCKET, region=REGION)


def _rule(rule_id, prefix, days=None, created_before=None, status="Enabled"):
    from oss2.models import LifecycleExpiration, LifecycleRule

    return LifecycleRule(rule_id, prefix, status=status,
                         expiration=LifecycleExpiration(days=days, created_before_date=created_before))


def test_lifecycle_configuration_round_trip(standins, v4_bucket):  # noqa: F811
    from oss2.models import BucketLifecycle

    owner = _owner(standins)
    with pytest.raises(oss2.exceptions.NoSuchLifecycle):
        owner.get_bucket_lifecycle()
    owner.put_bucket_lifecycle(BucketLifecycle([_rule("pending", "uploads/pending/", days=1),
                                                _rule("old", "logs/", status="Disabled", days=30)]))
    rules = owner.get_bucket_lifecycle().rules
    assert [(r.id, r.prefix, r.status, r.expiration.days) for r in rules] == [
        ("pending", "uploads/pending/", "Enabled", 1), ("old", "logs/", "Disabled", 30)]
    with pytest.raises(oss2.exceptions.AccessDenied):  # not what the upload credentials may do
        v4_bucket.put_bucket_lifecycle(BucketLifecycle([_rule("x", "", days=1)]))
    with pytest.raises(oss2.exceptions.ServerError) as malformed:
        owner.put_bucket_lifecycle("<LifecycleConfiguration><Rule><Status>On</Status></Rule></LifecycleConfiguration>")
    assert malformed.value.code == "MalformedXML"
    owner.delete_bucket_lifecycle()
    with pytest.raises(oss2.exceptions.NoSuchLifecycle):
        owner.get_bucket_lifecycle()


def test_lifecycle_expiry_deletes_on_the_standins_clock(standins, clock):  # noqa: F811
    import datetime

    from oss2.models import BucketLifecycle

    owner = _owner(standins)
    for key in (PENDING, KEY, "logs/a.txt", "archive/a.txt"):
        owner.put_object(key, b"x")
    tomorrow = datetime.date.today() + datetime.timedelta(days=2)
    owner.put_bucket_lifecycle(BucketLifecycle([
        _rule("pending", "uploads/pending/", days=1), _rule("off", "logs/", days=1, status="Disabled"),
        _rule("dated", "archive/", created_before=tomorrow)]))
    later = owner.sign_url("GET", PENDING, 3 * 86400, slash_safe=True)  # still valid after the jump
    assert standins.oss.run_lifecycle() == ["archive/a.txt"]  # modified before the date
    clock.offset = 86400 - 5
    assert requests.get(later, timeout=10).content == b"x"
    clock.offset = 86400 + 5
    response = requests.get(later, timeout=10)  # expired objects are gone at once, sweep or not
    assert (response.status_code, _code(response)) == (404, "NoSuchKey")
    assert standins.oss.run_lifecycle() == []
    assert standins.oss.store.get(BUCKET, KEY) is not None and standins.oss.store.get(BUCKET, "logs/a.txt")
