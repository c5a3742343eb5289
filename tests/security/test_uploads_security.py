"""Uploads (issue 12): one regression test per finding, each run through the app's REST and
WebSocket entry points against the OSS and STS stand-ins, with the real oss2 client where a user
would use one.

- what the client declares at attach time (size, type, name) is not believed: the stored object is;
- file names lose the control and bidi characters that disguise them;
- a closed conversation takes no grant, and an upload granted before the close is not attachable
  to it unless the send reopens it;
- download URLs carry Content-Disposition and are answered with nosniff;
- uploads never attached expire (a lifecycle rule on the pending prefix, set by infra/aliyun.py);
- upload quotas (files and bytes, per visitor per hour and per site per day) hold in DynamoDB.
"""
from __future__ import annotations

import importlib
import json
import subprocess
import sys
import urllib.parse

import oss2
import pytest
import requests

from chalicelib import uploads
from chalicelib.config import settings
from chalicelib.models import Message, Site, Visitor, as_dict
from tests.test_uploads import BUCKET, LONG_TERM_ID, LONG_TERM_SECRET, REGION, ROOT, clock, standins  # noqa: F401

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 300
TEXT = b"just some text, not a picture\n" * 10
PDF = b"%PDF-1.4 price list\n"


def _grant(harness, token, cid, name, content_type, size):
    return harness.rest("POST", "/v1/uploads", {"conversation_id": cid, "file_name": name,
                                                "content_type": content_type, "size": size}, token=token)


def _post_form(grant, body, content_type):
    """What the widget does with a grant: the fields in order, then the file."""
    return requests.post(grant["url"], data=grant["fields"], files={"file": ("f", body, content_type)}, timeout=10)


def _upload(harness, token, cid, name, content_type, body):
    grant = _grant(harness, token, cid, name, content_type, len(body))
    assert grant.status_code == 200, grant.json_body
    assert _post_form(grant.json_body, body, content_type).status_code == 201
    return grant.json_body


def _send(harness, who, cid, client_msg_id, attachment):
    """A message with an attachment as clients send it, over REST (the WebSocket refuses them): the
    ack, or the error as an error frame carries it."""
    response = harness.rest("POST", f"/v1/conversations/{cid}/messages",
                            {"client_msg_id": client_msg_id, "attachment": attachment}, token=who["token"])
    return response.json_body if response.status_code == 200 else {"type": "error", **response.json_body}


def _declared(grant, name, body, content_type):
    """An attachment as the widget declares it (only the key is believed)."""
    return {"key": grant["key"], "name": name, "size": len(body), "content_type": content_type}


def _stored(cid, client_msg_id):
    return as_dict(Message.get(cid, client_msg_id).attachment)


def _exists(cid, client_msg_id):
    return Message.count(cid, Message.client_msg_id == client_msg_id) > 0


def _owner_bucket(endpoint):
    """The account owner's view of the bucket (long-term key), as the infra script has it."""
    return oss2.Bucket(oss2.AuthV4(LONG_TERM_ID, LONG_TERM_SECRET), endpoint, BUCKET, region=REGION)


@pytest.fixture
def chat(harness, standins):  # noqa: F811
    return harness.chat()


# ---- the declared size, type and name are not believed -------------------------------------

def test_size_and_type_are_the_stored_objects_not_the_declared_ones(harness, chat):
    cid, token = chat.visitor["conversation_id"], chat.visitor["token"]
    grant = _upload(harness, token, cid, "notes.txt", "text/plain", TEXT)
    ack = _send(harness, chat.visitor, cid, "m1", {
        "key": grant["key"], "name": "holiday.jpg", "size": 10, "content_type": "image/jpeg"})
    assert ack["type"] == "ack", ack
    stored = _stored(cid, "m1")
    assert (stored["content_type"], stored["size"], stored["name"]) == ("text/plain", len(TEXT), "notes.txt")
    assert stored["key"] == grant["key"].replace("uploads/pending/", "uploads/")  # attached: out of pending
    pushed = harness.mgmt.of_type(chat.agent_conn, "message")[-1]["attachment"]
    assert (pushed["content_type"], pushed["size"], pushed["name"]) == ("text/plain", len(TEXT), "notes.txt")


def test_a_grant_takes_no_more_than_its_declared_size(harness, chat):
    cid, token = chat.visitor["conversation_id"], chat.visitor["token"]
    grant = _grant(harness, token, cid, "tiny.png", "image/png", 10).json_body
    big = b"\x89PNG\r\n\x1a\n" + b"\x00" * (2 * 1024 * 1024)  # 2 MB under a grant for 10 bytes
    response = _post_form(grant, big, "image/png")
    assert response.status_code == 400 and "<Code>EntityTooLarge</Code>" in response.text
    assert uploads.object_size(grant["key"]) is None


def test_an_object_outside_the_sites_policy_is_not_attached(harness, chat):
    cid, token = chat.visitor["conversation_id"], chat.visitor["token"]
    text = _upload(harness, token, cid, "notes.txt", "text/plain", TEXT)
    picture = _upload(harness, token, cid, "cat.png", "image/png", PNG)
    site = Site.get(chat.site.site_id)
    site.update(actions=[Site.upload_types.set(["image/*"])])  # the site's policy changed meanwhile
    refused = _send(harness, chat.visitor, cid, "t1", {"key": text["key"], "name": "notes.png",
                                                            "size": 10, "content_type": "image/png"})
    assert (refused["type"], refused.get("code")) == ("error", "attachment_type_not_allowed")
    site.update(actions=[Site.upload_max_bytes.set(100)])
    too_big = _send(harness, chat.visitor, cid, "p1", {"key": picture["key"], "name": "cat.png",
                                                            "size": 10, "content_type": "image/png"})
    assert (too_big["type"], too_big.get("code")) == ("error", "attachment_too_large")
    assert not _exists(cid, "t1") and not _exists(cid, "p1")


# ---- names ---------------------------------------------------------------------------------

@pytest.mark.parametrize("given,shown", [
    ("invoice\u202efdp.exe", "invoicefdp.exe.pdf"),  # shows as "invoiceexe.pdf" with the override
    ("\u2067report\u2069\u200f.pdf", "report.pdf"),
    ("a\u0007b\u0085c\u200e.pdf", "ab c.pdf"),
    ("line\nbreak.pdf", "line break.pdf"),
])
def test_file_names_lose_control_and_bidi_characters(harness, chat, given, shown):
    cid, token = chat.visitor["conversation_id"], chat.visitor["token"]
    grant = _upload(harness, token, cid, given, "application/pdf", PDF)
    ack = _send(harness, chat.visitor, cid, "n1", {"key": grant["key"], "name": given,
                                                        "size": len(PDF), "content_type": "application/pdf"})
    assert ack["type"] == "ack", ack
    assert _stored(cid, "n1")["name"] == shown
    assert urllib.parse.unquote(grant["fields"]["x-oss-meta-name"]) == shown  # what OSS records


def test_names_are_cleaned_even_when_only_declared_at_attach_time():
    for name in ("x\u202eyz.exe", "\u2066a\u2069", "\u200e\u200fb", "c\x00\x1f\x7f\x9f"):
        cleaned = uploads.clean_name(name)
        assert not any(ord(ch) < 32 or 0x7f <= ord(ch) <= 0x9f or ch in "\u202a\u202b\u202c\u202d\u202e"
                       "\u2066\u2067\u2068\u2069\u200e\u200f" for ch in cleaned), (name, cleaned)
    assert uploads.display_name("photo.png.exe", "image/png") == "photo.png.exe.png"


# ---- closed conversations ------------------------------------------------------------------

@pytest.fixture
def opened_chat(harness, standins):  # noqa: F811
    """A chat whose visitor has written: the conversation has an item, so agents can close it."""
    return harness.chat(opened=True)


def test_no_grant_for_a_closed_conversation(harness, opened_chat):
    chat = opened_chat
    cid = chat.visitor["conversation_id"]
    assert harness.reply(chat.agent_conn, {"action": "close", "conversation_id": cid})["type"] != "error"
    refused = _grant(harness, chat.visitor["token"], cid, "a.png", "image/png", len(PNG))
    assert (refused.status_code, refused.json_body["code"]) == (403, "conversation_closed")


def test_an_upload_granted_before_the_close_is_attachable_only_if_the_send_reopens(harness, opened_chat):
    from chalicelib import conversations

    chat = opened_chat
    cid, token = chat.visitor["conversation_id"], chat.visitor["token"]
    agents = _grant(harness, chat.agent["token"], cid, "price-list.pdf", "application/pdf", len(PDF)).json_body
    moved_on = _grant(harness, token, cid, "late.png", "image/png", len(PNG)).json_body
    reopening = _grant(harness, token, cid, "later.png", "image/png", len(PNG)).json_body
    assert harness.reply(chat.agent_conn, {"action": "close", "conversation_id": cid})["type"] != "error"
    for grant, body, content_type in ((agents, PDF, "application/pdf"), (moved_on, PNG, "image/png"),
                                      (reopening, PNG, "image/png")):
        assert _post_form(grant, body, content_type).status_code == 201  # OSS cannot know of the close

    # The visitor has since started another conversation: the old one's upload stays out of it.
    visitor_id = chat.visitor["visitor_id"]
    other = conversations.open_for_visitor(Visitor.get(chat.site.site_id, visitor_id))
    assert other.conversation_id != cid and conversations.is_virtual(other)  # reserved: nobody wrote there
    refused = _send(harness, chat.visitor, cid, "v1", _declared(moved_on, "late.png", PNG, "image/png"))
    assert (refused["type"], refused.get("code")) == ("error", "conversation_closed")
    assert Message.count(other.conversation_id) == 0

    # An agent cannot attach to a closed conversation: nothing moves out of the pending prefix.
    refused = _send(harness, chat.agent, cid, "a1", _declared(agents, "price-list.pdf", PDF, "application/pdf"))
    assert (refused["type"], refused.get("code")) == ("error", "conversation_closed")
    assert uploads.object_size(agents["key"]) == len(PDF)
    assert uploads.object_size(agents["key"].replace("uploads/pending/", "uploads/")) is None

    # Back to the closed conversation as the visitor's current one: the send reopens it, so the
    # upload is attached (see docs/protocol.md, "Closed is not a dead end").
    Visitor.get(chat.site.site_id, visitor_id).update(actions=[Visitor.conversation_id.set(cid)])
    ack = _send(harness, chat.visitor, cid, "v2", _declared(reopening, "later.png", PNG, "image/png"))
    assert (ack["type"], ack["conversation_id"]) == ("ack", cid), ack
    assert harness.mgmt.of_type(chat.visitor_conn, "conversation")[-1]["event"] == "reopened"
    assert _stored(cid, "v2")["size"] == len(PNG)


# ---- downloads -----------------------------------------------------------------------------

def test_downloads_carry_content_disposition_and_nosniff(harness, chat):
    cid, token = chat.visitor["conversation_id"], chat.visitor["token"]
    document = _upload(harness, token, cid, "Quote 2024 \u62a5\u4ef7.pdf", "application/pdf", b"%PDF-1.4 quote")
    picture = _upload(harness, token, cid, "cat.png", "image/png", PNG)
    _send(harness, chat.visitor, cid, "d1", _declared(document, "Quote.pdf", b"%PDF-1.4 quote", "application/pdf"))
    _send(harness, chat.visitor, cid, "d2", _declared(picture, "cat.png", PNG, "image/png"))
    pushed = {m["client_msg_id"]: m["attachment"] for m in harness.mgmt.of_type(chat.agent_conn, "message")}
    expected = {"d1": "attachment; filename*=UTF-8''Quote%202024%20%E6%8A%A5%E4%BB%B7.pdf", "d2": "inline"}
    for client_msg_id, disposition in expected.items():
        assert "url" not in pushed[client_msg_id]  # signing needs oss2: the REST route below alone
        fresh = harness.rest("GET", f"/v1/conversations/{cid}/attachments/url?key="
                             + urllib.parse.quote(pushed[client_msg_id]["key"]), token=chat.agent["token"])
        assert fresh.status_code == 200, fresh.json_body
        query = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(fresh.json_body["url"]).query))
        assert query["response-content-disposition"] == disposition
        got = requests.get(fresh.json_body["url"], timeout=10)
        assert got.status_code == 200
        assert got.headers["Content-Disposition"] == disposition
        assert got.headers["X-Content-Type-Options"] == "nosniff"


# ---- uploads never attached expire ---------------------------------------------------------

def test_uploads_never_attached_expire_under_the_lifecycle_rule(harness, chat, standins, clock):  # noqa: F811
    from infra import aliyun

    plan = subprocess.run([sys.executable, "-m", "infra.aliyun", "--account-id", "1234", "--ram-user", "kefu-fn",
                           "--bucket", BUCKET, "--origin", "https://shop.example", "--dry-run"],
                          cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert plan.returncode == 0, plan.stderr
    steps = {step["action"]: step["params"] for step in json.loads(plan.stdout)}
    assert steps["PutBucketLifecycle"]["rules"] == [
        {"id": aliyun.LIFECYCLE_RULE_ID, "prefix": "uploads/pending/", "status": "Enabled", "expiration_days": 1}]
    aliyun.apply_oss([{"service": "oss", "action": "PutBucketLifecycle", "params": steps["PutBucketLifecycle"]}],
                     _owner_bucket(standins.oss_endpoint))

    cid, token = chat.visitor["conversation_id"], chat.visitor["token"]
    abandoned = _upload(harness, token, cid, "abandoned.png", "image/png", PNG)
    kept = _upload(harness, token, cid, "kept.png", "image/png", PNG)
    assert _send(harness, chat.visitor, cid, "k1", _declared(kept, "kept.png", PNG, "image/png"))["type"] == "ack"
    kept_key = _stored(cid, "k1")["key"]
    assert not kept_key.startswith("uploads/pending/") and uploads.object_size(kept["key"]) is None

    clock.offset = 86400 - 60  # not yet a day
    assert standins.oss.run_lifecycle() == []
    clock.offset = 86400 + 60
    assert standins.oss.run_lifecycle() == [abandoned["key"]]
    clock.offset = 0
    assert uploads.object_size(abandoned["key"]) is None
    assert uploads.object_size(kept_key) == len(PNG)
    late = _send(harness, chat.visitor, cid, "k2", _declared(abandoned, "abandoned.png", PNG, "image/png"))
    assert (late["type"], late.get("code")) == ("error", "attachment_not_uploaded")


# ---- quotas --------------------------------------------------------------------------------

def _quota_env(monkeypatch, **values):
    for name, value in values.items():
        monkeypatch.setenv(name, str(value))
    settings.cache_clear()


def test_upload_quotas_hold_across_function_instances(harness, chat, monkeypatch):
    from chalicelib import attachments, clock
    from chalicelib.models import Limit

    _quota_env(monkeypatch, KEFU_UPLOAD_FILES_PER_HOUR=3, KEFU_UPLOAD_BYTES_PER_HOUR=10_000,
               KEFU_SITE_UPLOAD_FILES_PER_DAY=6, KEFU_SITE_UPLOAD_BYTES_PER_DAY=1_000_000)
    cid, token = chat.visitor["conversation_id"], chat.visitor["token"]
    second, third = harness.visitor(chat.site.site_id), harness.visitor(chat.site.site_id)

    # Files per visitor per hour, counted in DynamoDB: a fresh function instance knows them.
    for _ in range(3):
        assert _grant(harness, token, cid, "a.png", "image/png", 100).status_code == 200
        importlib.reload(attachments)  # the next request on a fresh function instance
    refused = _grant(harness, token, cid, "a.png", "image/png", 100)
    assert (refused.status_code, refused.json_body["code"]) == (429, "rate_limited")
    assert 0 < int(refused.headers["Retry-After"]) <= 3601
    counted = {item.key.split("#")[0]: int(item.count) for item in Limit.scan() if item.key.startswith("upload-")}
    assert counted == {f"upload-files:{chat.site.site_id}:visitor:{chat.visitor['visitor_id']}": 3,
                       f"upload-bytes:{chat.site.site_id}:visitor:{chat.visitor['visitor_id']}": 300,
                       f"upload-files:{chat.site.site_id}": 3, f"upload-bytes:{chat.site.site_id}": 300}

    # Bytes per visitor per hour (declared sizes: a form takes no more).
    assert _grant(harness, second["token"], second["conversation_id"], "b.png", "image/png", 9_000).status_code == 200
    too_many_bytes = _grant(harness, second["token"], second["conversation_id"], "c.png", "image/png", 1_001)
    assert (too_many_bytes.status_code, too_many_bytes.json_body["code"]) == (429, "rate_limited")
    counted = {item.key.split("#")[0]: int(item.count) for item in Limit.scan() if item.key.startswith("upload-")}
    assert counted[f"upload-files:{chat.site.site_id}:visitor:{second['visitor_id']}"] == 1  # refused: taken back
    assert counted[f"upload-files:{chat.site.site_id}"] == 4
    assert _grant(harness, second["token"], second["conversation_id"], "c.png", "image/png", 1_000).status_code == 200

    # Files per site per day: 5 so far, then one more, then none for anyone today.
    assert _grant(harness, third["token"], third["conversation_id"], "d.png", "image/png", 10).status_code == 200
    refused = _grant(harness, third["token"], third["conversation_id"], "d.png", "image/png", 10)
    assert (refused.status_code, refused.json_body["code"]) == (429, "rate_limited")
    assert "site" in refused.json_body["message"]

    # Windows are fixed (a clock hour, a UTC day): the next day starts afresh.
    later = clock.now() + 86400
    monkeypatch.setattr(attachments, "clock", type("Later", (), {"now": staticmethod(lambda: later)}))
    assert _grant(harness, token, cid, "a.png", "image/png", 100).status_code == 200


def test_a_refused_grant_counts_nothing(harness, chat, monkeypatch):
    _quota_env(monkeypatch, KEFU_UPLOAD_FILES_PER_HOUR=1)
    cid, token = chat.visitor["conversation_id"], chat.visitor["token"]
    assert _grant(harness, token, cid, "a.exe", "application/x-msdownload", 10).status_code == 415
    assert _grant(harness, token, cid, "a.png", "image/png", 10 ** 9).status_code == 413
    assert _grant(harness, token, cid, "a.png", "image/png", 10).status_code == 200


def test_concurrent_grants_never_exceed_a_quota(aws, monkeypatch):
    from concurrent.futures import ThreadPoolExecutor

    from chalicelib import attachments
    from chalicelib.errors import KefuError
    from chalicelib.tokens import Identity

    _quota_env(monkeypatch, KEFU_UPLOAD_FILES_PER_HOUR=100, KEFU_SITE_UPLOAD_FILES_PER_DAY=5)
    visitors = [Identity("visitor", "site1", f"v{i}", "conv1") for i in range(12)]

    def grant(identity):
        try:
            attachments.charge_quota(identity, 10)
            return "granted"
        except KefuError as refused:
            return refused.code

    with ThreadPoolExecutor(max_workers=6) as pool:
        outcomes = list(pool.map(grant, visitors))
    assert sorted(outcomes) == ["granted"] * 5 + ["rate_limited"] * 7


def test_the_websocket_refuses_attachments_and_points_to_rest(harness, chat):
    """Attaching needs oss2, which only the REST function carries: a `send` frame with an attachment
    gets a typed error, stores nothing, and the same message over REST is attached."""
    cid, token = chat.visitor["conversation_id"], chat.visitor["token"]
    picture = _upload(harness, token, cid, "cat.png", "image/png", PNG)
    refused = harness.reply(chat.visitor_conn, {"action": "send", "conversation_id": cid, "client_msg_id": "w1",
                                                "attachment": _declared(picture, "cat.png", PNG, "image/png")})
    assert (refused["type"], refused.get("code")) == ("error", "attachment_via_rest")
    assert not _exists(cid, "w1")
    assert _send(harness, chat.visitor, cid, "w1", _declared(picture, "cat.png", PNG, "image/png"))["type"] == "ack"
    pushed = harness.mgmt.of_type(chat.agent_conn, "message")[-1]["attachment"]
    assert pushed == {"key": _stored(cid, "w1")["key"], "name": "cat.png", "size": len(PNG), "content_type": "image/png"}
