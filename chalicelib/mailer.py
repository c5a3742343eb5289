"""Sending one email: Amazon SES (boto3's sesv2) in the cloud, an SMTP server when
KEFU_SMTP_HOST names one (the local stack's mailbox). Called only by the mail schedule
(chalicelib/outbox.py), never on the chat path. A failure raises ``MailError``.
"""
from __future__ import annotations

from email.message import EmailMessage
from email.utils import formataddr, make_msgid
from typing import List, Optional

from chalicelib.config import settings


class MailError(Exception):
    pass


def send(recipients: List[str], subject: str, text: str, from_name: Optional[str] = None) -> str:
    """Send a plain-text email; returns the provider's message id."""
    cfg = settings()
    if not cfg.mail_from:
        raise MailError("KEFU_MAIL_FROM is not set: nowhere to send email from")
    if not recipients:
        raise MailError("no recipients")
    subject = " ".join(subject.split())[:200]  # names typed by visitors: never a header break
    sender = formataddr((" ".join(from_name.split())[:80], cfg.mail_from)) if from_name else cfg.mail_from
    if cfg.smtp_host:
        return _smtp(cfg.smtp_host, cfg.smtp_port, sender, recipients, subject, text)
    return _ses(sender, recipients, subject, text)


def _smtp(host: str, port: int, sender: str, recipients: List[str], subject: str, text: str) -> str:
    import smtplib

    message = EmailMessage()
    message["From"], message["To"], message["Subject"] = sender, ", ".join(recipients), subject
    message["Message-ID"] = make_msgid(domain="kefu.local")
    message.set_content(text)
    try:
        with smtplib.SMTP(host, port, timeout=10) as smtp:
            smtp.send_message(message)
    except (OSError, smtplib.SMTPException) as exc:
        raise MailError(f"SMTP {host}:{port}: {exc}") from exc
    return message["Message-ID"]


def _ses(sender: str, recipients: List[str], subject: str, text: str) -> str:
    import boto3
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        response = boto3.client("sesv2", region_name=settings().region).send_email(
            FromEmailAddress=sender,
            Destination={"ToAddresses": recipients},
            Content={"Simple": {"Subject": {"Data": subject, "Charset": "UTF-8"},
                                "Body": {"Text": {"Data": text, "Charset": "UTF-8"}}}},
        )
    except (BotoCoreError, ClientError) as exc:
        raise MailError(f"SES: {exc}") from exc
    return response["MessageId"]
