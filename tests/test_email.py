"""Email through a real SMTP server on loopback (local/mailbox.py): offline messages, visitors waiting,
replies to visitors who left (with a working link back), transcripts, and failures never silent."""
from __future__ import annotations

import logging
import socket

import pytest

from chalicelib import outbox, sites
from chalicelib.models import Mail


@pytest.fixture
def mailbox(monkeypatch):
    from chalicelib.config import settings
    from local.mailbox import Mailbox

    box = Mailbox("127.0.0.1").start()
    monkeypatch.setenv("KEFU_SMTP_HOST", box.host)
    monkeypatch.setenv("KEFU_SMTP_PORT", str(box.port))
    monkeypatch.setenv("KEFU_MAIL_FROM", "support@shop.example")
    monkeypatch.setenv("KEFU_CONSOLE_URL", "https://console.example/")
    settings.cache_clear()
    yield box
    box.stop()


def mails_of(kind):
    return [m for m in Mail.scan() if m.kind == kind]  # tests only: the app never scans


def test_an_offline_message_is_emailed_to_the_sites_agents(harness, mailbox, timeline):
    site = harness.site()
    sites.create_agent(site.site_id, "ann@shop.example", "correct horse", "Ann", role="owner")
    sites.create_agent(site.site_id, "bob@shop.example", "correct horse", "Bob")
    visitor = harness.visitor(site.site_id)
    harness.rest("POST", "/v1/visitor/contact", {"email": "vera@mail.example", "name": "Vera"}, token=visitor["token"])
    harness.say(visitor, "Is the celadon set back in stock?")
    assert mailbox.mails() == []  # never on the chat path
    [queued] = mails_of("offline_message")
    assert queued.status == "pending"
    timeline(outbox.OFFLINE_DELAY + 1)
    assert outbox.deliver_due() == {"sent": 1}
    [mail] = mailbox.mails()
    assert sorted(mail["to"]) == ["ann@shop.example", "bob@shop.example"]
    assert "Vera" in mail["subject"] and "support@shop.example" in mail["from"]
    assert "Is the celadon set back in stock?" in mail["text"] and "vera@mail.example" in mail["text"]
    assert "https://console.example/" in mail["text"]
    assert Mail.get(queued.mail_id).status == "sent"
    assert outbox.deliver_due() == {}  # sent once


def test_a_visitor_waiting_unanswered_is_emailed_unless_answered(harness, mailbox, timeline):
    from chalicelib.config import settings

    site, agent, agent_conn, visitor, visitor_conn = harness.chat()
    other = harness.visitor(site.site_id)  # tokens are dated by the real clock: made before time moves
    harness.say(visitor, "您好，请问发货了吗？")
    [queued] = mails_of("unanswered")
    timeline(60)
    assert outbox.deliver_due() == {}  # not due yet
    timeline(settings().mail_unanswered_minutes * 60)
    assert outbox.deliver_due() == {"sent": 1}
    [mail] = mailbox.mails()
    assert mail["to"] == ["ann@shop.example"] and "已等待" in mail["subject"]  # the visitor wrote Chinese

    harness.say(other, "hello?")
    harness.reply(agent_conn, {"action": "send", "conversation_id": other["conversation_id"],
                               "client_msg_id": "answer", "text": "Hi! Looking now."})
    timeline(settings().mail_unanswered_minutes * 60 + 1)
    assert outbox.deliver_due() == {"skipped": 1}
    assert len(mailbox.mails()) == 1


def test_a_reply_to_a_visitor_who_left_is_emailed_with_a_link_back(harness, mailbox, timeline):
    from chalicelib.config import settings

    site, agent, agent_conn, visitor, visitor_conn = harness.chat()
    cid = visitor["conversation_id"]
    harness.reply(visitor_conn, {"action": "page_view", "url": "https://shop.example/teapots/yixing", "title": "Yixing"})
    harness.rest("POST", "/v1/visitor/contact", {"email": "vera@mail.example"}, token=visitor["token"])
    harness.say(visitor, "Do you ship to Canada?")
    harness.reply(agent_conn, {"action": "send", "conversation_id": cid, "client_msg_id": "a1", "text": "Checking..."})
    assert mails_of("reply") == []  # the visitor is here: no email
    harness.disconnect(visitor_conn)
    for i, text in enumerate(["Yes, we ship to Canada.", "It takes about ten days."]):
        harness.reply(agent_conn, {"action": "send", "conversation_id": cid, "client_msg_id": f"b{i}", "text": text})
    assert len(mails_of("reply")) == 1  # one email for both
    timeline(settings().mail_reply_delay + 1)
    assert outbox.deliver_due().get("sent") == 1
    [mail] = [m for m in mailbox.mails() if m["to"] == ["vera@mail.example"]]
    assert "Yes, we ship to Canada." in mail["text"] and "It takes about ten days." in mail["text"]
    link = next(word for word in mail["text"].split() if "#kefu-resume=" in word)
    assert link.startswith("https://shop.example/teapots/yixing#kefu-resume=")
    back = harness.visitor(site.site_id, resume_token=link.split("#kefu-resume=")[1])
    assert back["conversation_id"] == cid and back["visitor_id"] == visitor["visitor_id"]


def test_a_reply_the_visitor_read_meanwhile_is_not_emailed(harness, mailbox, timeline):
    from chalicelib.config import settings

    site, agent, agent_conn, visitor, visitor_conn = harness.chat()
    cid = visitor["conversation_id"]
    harness.rest("POST", "/v1/visitor/contact", {"email": "vera@mail.example"}, token=visitor["token"])
    harness.say(visitor)
    harness.disconnect(visitor_conn)
    ack = harness.reply(agent_conn, {"action": "send", "conversation_id": cid, "client_msg_id": "a1", "text": "Hi"})
    conn, _ = harness.connect(visitor["token"])  # back, and reads it
    harness.reply(conn, {"action": "read", "conversation_id": cid, "seq": ack["seq"]})
    harness.disconnect(conn)
    timeline(settings().mail_reply_delay + 1)
    assert outbox.deliver_due() == {"skipped": 1}
    assert [m for m in mailbox.mails() if m["to"] == ["vera@mail.example"]] == []


def test_a_transcript_at_close_on_request(harness, mailbox, timeline):
    site, agent, agent_conn, visitor, visitor_conn = harness.chat()
    cid = visitor["conversation_id"]
    refused = harness.rest("POST", "/v1/visitor/contact", {"transcript": True}, token=visitor["token"])
    assert (refused.status_code, refused.json_body["code"]) == (400, "email_required")
    assert harness.rest("POST", "/v1/visitor/contact", {"email": "vera@mail.example", "transcript": True},
                        token=visitor["token"]).status_code == 200
    harness.say(visitor, "one question")
    harness.reply(agent_conn, {"action": "send", "conversation_id": cid, "client_msg_id": "a1", "text": "one answer"})
    harness.reply(agent_conn, {"action": "close", "conversation_id": cid})
    assert outbox.deliver_due().get("sent") == 1
    [mail] = [m for m in mailbox.mails() if m["to"] == ["vera@mail.example"]]
    assert "one question" in mail["text"] and "one answer" in mail["text"]


def test_a_failing_mail_is_retried_logged_counted_then_marked_failed(harness, monkeypatch, timeline, caplog):
    from chalicelib import observability
    from chalicelib.config import settings

    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        dead_port = probe.getsockname()[1]
    monkeypatch.setenv("KEFU_SMTP_HOST", "127.0.0.1")
    monkeypatch.setenv("KEFU_SMTP_PORT", str(dead_port))
    monkeypatch.setenv("KEFU_MAIL_FROM", "support@shop.example")
    monkeypatch.setenv("KEFU_MAIL_MAX_ATTEMPTS", "3")
    settings.cache_clear()
    caplog.set_level(logging.WARNING, logger="kefu.mail")
    site = harness.site()
    sites.create_agent(site.site_id, "ann@shop.example", "correct horse", "Ann")
    harness.say(harness.visitor(site.site_id), "anyone?")
    errors_before = observability._counts["mail_errors"]
    failed_before = observability._counts["mails_failed"]
    outcomes = []
    for _ in range(3):
        timeline(3700)
        outcomes.append(outbox.deliver_due())
    assert outcomes == [{"retry": 1}, {"retry": 1}, {"failed": 1}]
    [mail] = mails_of("offline_message")
    assert mail.status == "failed" and mail.attempts == 3 and "SMTP" in mail.last_error
    assert mail.due_shard is None  # off the due index: the sender never reads it again
    assert observability._counts["mail_errors"] - errors_before == 3
    assert observability._counts["mails_failed"] - failed_before == 1
    assert any(r.levelno == logging.ERROR and mail.mail_id in r.getMessage() for r in caplog.records)
    settings.cache_clear()


def test_a_mail_is_sent_once_even_by_overlapping_runs(harness, mailbox, timeline):
    site = harness.site()
    sites.create_agent(site.site_id, "ann@shop.example", "correct horse", "Ann")
    harness.say(harness.visitor(site.site_id), "anyone?")
    timeline(outbox.OFFLINE_DELAY + 1)
    [item] = mails_of("offline_message")
    assert outbox._lease(item, outbox.clock.now())  # another run holds it
    assert outbox.deliver_due() == {}
    assert mailbox.mails() == []


def test_the_mail_schedule_runs_through_the_app(harness, mailbox, timeline):
    site = harness.site()
    sites.create_agent(site.site_id, "ann@shop.example", "correct horse", "Ann")
    harness.say(harness.visitor(site.site_id), "anyone?")
    timeline(outbox.OFFLINE_DELAY + 1)
    event = harness.client.events.generate_cw_event(source="aws.events", detail_type="Scheduled Event",
                                                    detail={}, resources=[])
    harness.client.lambda_.invoke("deliver_mail", event)
    assert [m["to"] for m in mailbox.mails()] == [["ann@shop.example"]]


def test_a_backlog_longer_than_a_page_is_sent_in_one_run(harness, mailbox, timeline, no_rate_limits):
    site = harness.site()
    sites.create_agent(site.site_id, "ann@shop.example", "correct horse", "Ann")
    for i in range(outbox.PAGE + 5):
        harness.say(harness.visitor(site.site_id, name=f"Visitor\n{i}\r\nBcc: x@evil.example"), f"message {i}")
    timeline(outbox.OFFLINE_DELAY + 1)
    assert outbox.deliver_due() == {"sent": outbox.PAGE + 5}
    assert len(mailbox.mails()) == outbox.PAGE + 5
    assert all(m["to"] == ["ann@shop.example"] and "\n" not in m["subject"] for m in mailbox.mails())


def test_internal_notes_are_never_emailed_to_the_visitor(harness, mailbox, timeline):
    """A note to colleagues while the visitor is gone queues no reply email, and a transcript leaves
    it out (issue 16's notes meet issue 15's email)."""
    from chalicelib.config import settings

    site, agent, agent_conn, visitor, visitor_conn = harness.chat()
    cid = visitor["conversation_id"]
    harness.rest("POST", "/v1/visitor/contact", {"email": "vera@mail.example", "transcript": True},
                 token=visitor["token"])
    harness.say(visitor, "Is the red teapot in stock?")
    harness.disconnect(visitor_conn)
    harness.reply(agent_conn, {"action": "send", "conversation_id": cid, "client_msg_id": "n1", "note": True,
                               "text": "internal: supplier is late, do not promise a date"})
    assert mails_of("reply") == []  # a note is no reply
    harness.reply(agent_conn, {"action": "send", "conversation_id": cid, "client_msg_id": "a1", "text": "Yes, it is."})
    harness.reply(agent_conn, {"action": "close", "conversation_id": cid})
    timeline(settings().mail_reply_delay + 1)
    outbox.deliver_due()
    texts = [m["text"] for m in mailbox.mails() if m["to"] == ["vera@mail.example"]]
    assert texts and any("Yes, it is." in t for t in texts)
    assert not any("supplier is late" in t for t in texts)
