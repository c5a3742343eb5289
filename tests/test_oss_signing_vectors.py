"""The stand-in's OSS signatures against published known answers (not just against oss2).

V1: Aliyun's documented example. V4: the vectors in Aliyun's own SDK unit tests
(aliyun/alibabacloud-oss-python-sdk-v2, tests/unit/signer/test_v4.py; the Go, Java, Android and
iOS SDKs test the same inputs and outputs). Only the inputs and expected values are copied.
"""
from __future__ import annotations

from datetime import datetime, timezone

import pytest

from chalicelib import uploads
from local import oss_signing as sig

# ---- V1 -------------------------------------------------------------------------------------

# Aliyun's documented V1 example ("Add a signature to the header", help.aliyun.com document 31951):
# AccessKeyId 44CF9590006BF252F707, the secret below, and the expected Authorization
# "OSS 44CF9590006BF252F707:26NBxoKdsyly4EDv6inkoDft/yA=".
DOC_SECRET = "OtxrzxIsfpFjA7SwPzILwy8Bw21TLhquhboDYROV"


def test_documented_header_signature():
    headers = {
        "Content-MD5": "ODBGOERFMDMzQTczRUY3NUE3NzA5QzdFNUYzMDQxNEM=",
        "Content-Type": "text/html",
        "Date": "Thu, 17 Nov 2005 18:49:58 GMT",
        "X-OSS-Meta-Author": "foo@bar.com",
        "X-OSS-Magic": "abracadabra",
    }
    text = sig.string_to_sign("PUT", headers, headers["Date"], "oss-example", "nelson", {})
    assert text == ("PUT\nODBGOERFMDMzQTczRUY3NUE3NzA5QzdFNUYzMDQxNEM=\ntext/html\n"
                    "Thu, 17 Nov 2005 18:49:58 GMT\nx-oss-magic:abracadabra\nx-oss-meta-author:foo@bar.com\n"
                    "/oss-example/nelson")
    assert sig.sign(DOC_SECRET, text) == "26NBxoKdsyly4EDv6inkoDft/yA="
    assert sig.parse_authorization("OSS 44CF9590006BF252F707:26NBxoKdsyly4EDv6inkoDft/yA=") == {
        "access_key_id": "44CF9590006BF252F707", "signature": "26NBxoKdsyly4EDv6inkoDft/yA="}


def test_url_signature_known_answer():
    # The same keys, GET oss-example/oss-api.pdf with Expires=1141889120. Aliyun's page prints a
    # signature that does not follow from its own inputs; the value here is the one the official
    # Go SDK's unit tests (TestServiceSignatureUrl) and the Ruby SDK's tests expect.
    text = sig.string_to_sign("GET", {}, "1141889120", "oss-example", "oss-api.pdf", {})
    assert text == "GET\n\n\n1141889120\n/oss-example/oss-api.pdf"
    assert sig.sign(DOC_SECRET, text) == "EwaNTn1erJGkimiJ9WmXgwnANLc="


def test_subresources_sorted_and_only_subresources_signed():
    resource = sig.canonicalized_resource(
        "b", "k", {"uploadId": "7", "partNumber": "2", "security-token": "T", "foo": "ignored", "acl": ""})
    assert resource == "/b/k?acl&partNumber=2&security-token=T&uploadId=7"


# ---- V4 -------------------------------------------------------------------------------------
# Common inputs of the SDK's vectors: credentials ak/sk, PUT bucket/"1234+-/123/1.txt" in
# cn-hangzhou, these query parameters and these headers.

V4_KEY = "1234+-/123/1.txt"
V4_PARAMS = [("param1", "value1"), ("+param1", "value3"), ("|param1", "value4"),
             ("+param2", ""), ("|param2", ""), ("param2", "")]
V4_HEADERS = {"x-oss-head1": "value", "abc": "value", "ZAbc": "value", "XYZ": "value"}

# (signing time, extra headers, additional headers, expected signature) — Authorization header.
V4_HEADER_VECTORS = [
    (1702743657, {}, [], "e21d18daa82167720f9b1047ae7e7f1ce7cb77a31e8203a7d5f4624fa0284afe"),
    (1702784856, {"x-oss-security-token": "token"}, [],
     "b94a3f999cf85bcdc00d332fbd3734ba03e48382c36fa4d5af5df817395bd9ea"),
    (1702747512, {}, ["abc", "zabc"], "4a4183c187c07c8947db7620deb0a6b38d9fbdd34187b6dbaccb316fa251212f"),
]
# (signing time, expiration time, security token, additional headers, expected signature) — URL.
V4_QUERY_VECTORS = [
    (1702781677, 1702782276, None, [], "a39966c61718be0d5b14e668088b3fa07601033f6518ac7b523100014269c0fe"),
    (1702785388, 1702785987, "token", [], "3817ac9d206cd6dfc90f1c09c00be45005602e55898f26f5ddb06d7892e1f8b5"),
    (1702783809, 1702784408, None, ["abc", "zabc"],
     "6bd984bfe531afb6db1f7550983a741b103a8c58e5e14f83ea474c2322dfa2b7"),
    (1702781677, 1702781677 + 5 * 86400, None, [],
     "31029123dc7732d2d2cfd4006ea4fdb6cf86da6478f813e2bf8f87877c7b9fec"),
]


def _timestamp(epoch: int) -> str:
    return datetime.fromtimestamp(epoch, tz=timezone.utc).strftime("%Y%m%dT%H%M%SZ")


def _signature(timestamp: str, params, headers, additional, signing_key=None) -> str:
    canonical = sig.v4_canonical_request("PUT", "bucket", V4_KEY, params, headers, additional)
    text = sig.v4_string_to_sign(timestamp, sig.v4_scope(timestamp[:8], "cn-hangzhou"), canonical)
    return sig.v4_sign(signing_key or sig.v4_signing_key("sk", timestamp[:8], "cn-hangzhou"), text)


@pytest.mark.parametrize("signed_at,extra,additional,expected", V4_HEADER_VECTORS)
def test_v4_header_vectors(signed_at, extra, additional, expected):
    timestamp = _timestamp(signed_at)
    headers = {**V4_HEADERS, "content-type": "text/plain", "x-oss-content-sha256": "UNSIGNED-PAYLOAD",
               "x-oss-date": timestamp, **extra}
    assert _signature(timestamp, V4_PARAMS, headers, additional) == expected


@pytest.mark.parametrize("signed_at,expires_at,token,additional,expected", V4_QUERY_VECTORS)
def test_v4_query_vectors(signed_at, expires_at, token, additional, expected):
    timestamp = _timestamp(signed_at)
    params = V4_PARAMS + [
        ("x-oss-signature-version", "OSS4-HMAC-SHA256"), ("x-oss-date", timestamp),
        ("x-oss-expires", str(expires_at - signed_at)),
        ("x-oss-credential", f"ak/{timestamp[:8]}/cn-hangzhou/oss/aliyun_v4_request"),
    ]
    if token:
        params.append(("x-oss-security-token", token))
    if additional:
        params.append(("x-oss-additional-headers", ";".join(additional)))
    headers = {**V4_HEADERS, "content-type": "application/octet-stream"}
    assert _signature(timestamp, params, headers, additional) == expected


def test_v4_canonical_query_and_uri_encoding():
    assert sig.v4_canonical_query(V4_PARAMS) == "%2Bparam1=value3&%2Bparam2&%7Cparam1=value4&%7Cparam2&param1=value1&param2"
    assert sig.v4_uri_encode("/bucket/1234+-/123/1.txt", True) == "/bucket/1234%2B-/123/1.txt"


def test_v4_authorization_header_parsing():
    # as the SDK's first vector prints it (no spaces), and as oss2 writes it (", " between fields)
    for header in ("OSS4-HMAC-SHA256 Credential=ak/20231216/cn-hangzhou/oss/aliyun_v4_request,"
                   "AdditionalHeaders=abc;zabc,Signature=4a4183c1",
                   "OSS4-HMAC-SHA256 Credential=ak/20231216/cn-hangzhou/oss/aliyun_v4_request, "
                   "AdditionalHeaders=abc;zabc, Signature=4a4183c1"):
        assert sig.parse_v4_authorization(header) == {
            "Credential": "ak/20231216/cn-hangzhou/oss/aliyun_v4_request",
            "AdditionalHeaders": "abc;zabc", "Signature": "4a4183c1"}
    assert sig.parse_v4_credential("ak/20231216/cn-hangzhou/oss/aliyun_v4_request") == {
        "access_key_id": "ak", "date": "20231216", "region": "cn-hangzhou", "product": "oss"}
    assert sig.parse_v4_credential("ak/20231216//oss/aliyun_v4_request") is None  # no region
    assert sig.parse_v4_credential("ak/2023-12-16/cn-hangzhou/oss/aliyun_v4_request") is None


def test_chalicelib_signing_key_reproduces_the_sdk_vector():
    """The grant's own (independent) V4 key derivation signs the SDK's first vector right."""
    signed_at, extra, additional, expected = V4_HEADER_VECTORS[0]
    timestamp = _timestamp(signed_at)
    headers = {**V4_HEADERS, "content-type": "text/plain", "x-oss-content-sha256": "UNSIGNED-PAYLOAD",
               "x-oss-date": timestamp}
    key = uploads.v4_signing_key("sk", timestamp[:8], "cn-hangzhou")
    assert _signature(timestamp, V4_PARAMS, headers, additional, signing_key=key) == expected
