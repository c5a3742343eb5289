"""The local stack's mailbox: a real SMTP server on loopback, the mails at /local/mail and in /local/info."""
from __future__ import annotations

import requests

from tests.e2e.stack import RunningStack, wait_until


def test_offline_message_reaches_the_local_mailbox_and_the_demo_agent_is_an_owner():
    stack = RunningStack()
    try:
        info = stack.info
        assert info["mail_url"] == f"{stack.base}/local/mail" and info["admin_url"] == f"{stack.base}/admin/"
        assert info["smtp_host"] == "127.0.0.1" and info["smtp_port"] > 0 and info["mail_from"]
        assert requests.get(info["mail_url"], timeout=5).json() == {"mails": []}

        visitor = stack.visitor()
        assert visitor["widget"]["color"] == "#8a4b2a"  # the demo shop's settings ride on the session
        assert stack.rest("POST", "/v1/visitor/contact", token=visitor["token"],
                          json={"email": "vera@mail.example"}).status_code == 200
        sent = stack.rest("POST", f"/v1/conversations/{visitor['conversation_id']}/messages", token=visitor["token"],
                          json={"client_msg_id": "m1", "text": "Anyone there? 有人吗？"})
        assert sent.status_code == 200, sent.text

        def arrived():
            return requests.get(info["mail_url"], timeout=5).json()["mails"]
        [mail] = wait_until(arrived, timeout=30, interval=0.5)
        assert mail["to"] == [info["agent_email"]] and "Anyone there? 有人吗？" in mail["text"]
        assert "vera@mail.example" in mail["text"] and f"{stack.base}/console/" in mail["text"]

        owner = stack.agent()
        assert owner["role"] == "owner"
        site = stack.rest("GET", "/v1/admin/site", token=owner["token"], headers={"Origin": stack.base})
        assert site.status_code == 200 and site.headers["Access-Control-Allow-Origin"] == stack.base
        assert requests.get(info["admin_url"], timeout=5).status_code == 200
    finally:
        stack.stop()
