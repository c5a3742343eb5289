"""A real SMTP server on loopback that keeps every mail it receives: the local stack's inbox.

Kefu sends through it exactly as through any SMTP relay (chalicelib/mailer.py, KEFU_SMTP_HOST and
KEFU_SMTP_PORT); the stack lists what arrived at GET /local/mail. aiosmtpd speaks the protocol
(a few dozen lines of ours would not handle pipelining, dot-stuffing, 8BITMIME or SMTPUTF8).
"""
from __future__ import annotations

import email
import email.policy
import socket
import threading
import time
from typing import Any, Dict, List


class Mailbox:
    def __init__(self, host: str, port: int = 0) -> None:
        from aiosmtpd.controller import Controller

        self._mails: List[Dict[str, Any]] = []
        self._lock = threading.Lock()
        if not port:  # aiosmtpd checks it is up by connecting to the port it was given
            with socket.socket() as probe:
                probe.bind((host, 0))
                port = probe.getsockname()[1]
        self._port = port
        self._controller = Controller(self, hostname=host, port=port, ready_timeout=10)

    def start(self) -> "Mailbox":
        self._controller.start()
        return self

    @property
    def host(self) -> str:
        return self._controller.hostname

    @property
    def port(self) -> int:
        return self._port

    def stop(self) -> None:
        self._controller.stop()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # aiosmtpd's hook
        parsed = email.message_from_bytes(envelope.original_content or envelope.content, policy=email.policy.default)
        body = parsed.get_body(preferencelist=("plain", "html"))
        with self._lock:
            self._mails.append({
                "id": len(self._mails) + 1,
                "received_at": int(time.time() * 1000),
                "from": str(parsed.get("From", "")),
                "to": list(envelope.rcpt_tos),
                "subject": str(parsed.get("Subject", "")),
                "text": body.get_content() if body is not None else "",
            })
        return "250 Message accepted for delivery"

    def mails(self) -> List[Dict[str, Any]]:
        with self._lock:
            return list(self._mails)
