"""The stand-in's OSS signature V1 against published known answers (not just against oss2)."""
from __future__ import annotations

from local import oss_signing

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
    text = oss_signing.string_to_sign("PUT", headers, headers["Date"], "oss-example", "nelson", {})
    assert text == ("PUT\nODBGOERFMDMzQTczRUY3NUE3NzA5QzdFNUYzMDQxNEM=\ntext/html\n"
                    "Thu, 17 Nov 2005 18:49:58 GMT\nx-oss-magic:abracadabra\nx-oss-meta-author:foo@bar.com\n"
                    "/oss-example/nelson")
    assert oss_signing.sign(DOC_SECRET, text) == "26NBxoKdsyly4EDv6inkoDft/yA="
    assert oss_signing.parse_authorization("OSS 44CF9590006BF252F707:26NBxoKdsyly4EDv6inkoDft/yA=") == {
        "access_key_id": "44CF9590006BF252F707", "signature": "26NBxoKdsyly4EDv6inkoDft/yA="}


def test_url_signature_known_answer():
    # The same keys, GET oss-example/oss-api.pdf with Expires=1141889120. Aliyun's page prints a
    # signature that does not follow from its own inputs; the value here is the one the official
    # Go SDK's unit tests (TestServiceSignatureUrl) and the Ruby SDK's tests expect.
    text = oss_signing.string_to_sign("GET", {}, "1141889120", "oss-example", "oss-api.pdf", {})
    assert text == "GET\n\n\n1141889120\n/oss-example/oss-api.pdf"
    assert oss_signing.sign(DOC_SECRET, text) == "EwaNTn1erJGkimiJ9WmXgwnANLc="


def test_subresources_sorted_and_only_subresources_signed():
    resource = oss_signing.canonicalized_resource(
        "b", "k", {"uploadId": "7", "partNumber": "2", "security-token": "T", "foo": "ignored", "acl": ""})
    assert resource == "/b/k?acl&partNumber=2&security-token=T&uploadId=7"
