"""Email, asynchronously: a mail item is written with the event it tells of, and the mail schedule
(``deliver_mail`` in app.py, every minute in the cloud, every few seconds locally) sends what is due.

Events and the item each writes (one PutItem, never a read, never on a steady-state message):
- a conversation opens with no agent to take it -> ``offline_message`` to the site's agents;
- a conversation opens and is handed to an agent -> ``unanswered``, due after
  KEFU_MAIL_UNANSWERED_MINUTES: sent to the site's agents only if no agent has written by then;
- an agent writes while the visitor is gone and gave an email -> ``reply``, due after
  KEFU_MAIL_REPLY_DELAY: every reply they have not read, with a link back into the chat (one item
  per visitor read mark: further replies meanwhile ride on the same email);
- a conversation closes and the visitor asked for it -> ``transcript``.

Sending: each due item is leased with a conditional write (overlapping runs never send it twice),
composed from the conversation as it is then, and sent (chalicelib/mailer.py). A failure is logged
with the mail's id and counted (EMF ``MailErrors``), and retried with backoff; after
KEFU_MAIL_MAX_ATTEMPTS the item is marked ``failed``, logged at ERROR and counted (``MailsFailed``).
Nothing is dropped without a trace: the item stays in the mail table (30 days) with its last error.
"""
from __future__ import annotations

import logging
import re
from typing import Any, Callable, Dict, List, Optional, Tuple
from urllib.parse import urlsplit

from pynamodb.exceptions import DoesNotExist, PutError, UpdateError

from chalicelib import clock, observability
from chalicelib.config import settings
from chalicelib.errors import is_condition_failure
from chalicelib.models import Agent, Conversation, Mail, Message, Site, Visitor, as_dict

log = logging.getLogger("kefu.mail")

SHARD = 0  # one shard: a site's mail is a trickle next to its messages
PAGE = 25
LEASE_SECONDS = 120  # a run cut short leaves its lease: the mail is tried again after it
STOP_BEFORE_MS = 2_000  # no new send this close to the function's timeout
OFFLINE_DELAY = 5  # seconds: the visitor's first lines ride along
KEEP_SECONDS = 30 * 24 * 3600
MAX_MESSAGES = 50
_CJK = r"[\u3400-\u9fff]"  # compiled on first use (re caches it): a CJK range costs ~2 ms to compile, on every cold start


# --- writing: with the event ---------------------------------------------------------------------

def _enqueue(mail_id: str, kind: str, site_id: str, conversation_id: str, due_in: float) -> None:
    """One PutItem; a failure here never fails the chat action it rides on: it is logged and counted."""
    now = clock.now()
    item = Mail(mail_id, kind=kind, site_id=site_id, conversation_id=conversation_id, status="pending",
                due_shard=SHARD, due_at=int(now + due_in), created_at=int(now))
    try:
        item.save(condition=Mail.mail_id.does_not_exist())
    except PutError as exc:
        if is_condition_failure(exc):
            return  # the same email is already on its way
        log.exception("could not queue %s mail %s", kind, mail_id)
        observability.count("mail_errors")
    except Exception:
        log.exception("could not queue %s mail %s", kind, mail_id)
        observability.count("mail_errors")


def conversation_opened(conversation: Conversation, handed_to_agent: bool) -> None:
    key = f"{conversation.conversation_id}.{int(conversation.opened_at or 0)}"
    if handed_to_agent:
        _enqueue(f"unanswered.{key}", "unanswered", conversation.site_id, conversation.conversation_id,
                 settings().mail_unanswered_minutes * 60)
    else:
        _enqueue(f"offline.{key}", "offline_message", conversation.site_id, conversation.conversation_id,
                 OFFLINE_DELAY)


def agent_wrote(conversation: Conversation) -> None:
    """An agent's message is stored; ``conversation`` is the seq update's result (no extra read)."""
    if conversation.contact_email and not as_dict(conversation.visitor_conns):
        _enqueue(f"reply.{conversation.conversation_id}.{int(conversation.visitor_read_seq or 0)}", "reply",
                 conversation.site_id, conversation.conversation_id, settings().mail_reply_delay)


def conversation_closed(conversation: Conversation) -> None:
    if conversation.transcript_requested and conversation.contact_email:
        _enqueue(f"transcript.{conversation.conversation_id}.{int(conversation.closed_at or 0)}", "transcript",
                 conversation.site_id, conversation.conversation_id, 0)


# --- sending: the mail schedule ------------------------------------------------------------------

def deliver_due(remaining_ms: Optional[Callable[[], int]] = None) -> Dict[str, int]:
    """Send every mail that is due, oldest first, page by page, until none is left or the function
    is near its timeout (the next run goes on). Returns what happened, by outcome."""
    outcomes: Dict[str, int] = {}
    now = clock.now()
    for item in Mail.due_index.query(SHARD, Mail.due_at <= int(now), page_size=PAGE):
        if remaining_ms is not None and remaining_ms() < STOP_BEFORE_MS:
            break
        if not _lease(item, now):
            continue
        outcome = _deliver(item)
        outcomes[outcome] = outcomes.get(outcome, 0) + 1
    return outcomes


def _lease(item: Mail, now: float) -> bool:
    try:
        item.update(actions=[Mail.lease_until.set(int(now) + LEASE_SECONDS), Mail.attempts.add(1)],
                    condition=(Mail.status == "pending") & (Mail.lease_until.does_not_exist()
                                                            | (Mail.lease_until < int(now))))
    except UpdateError as exc:
        if is_condition_failure(exc):
            return False  # another run has it, or it is done
        raise
    return True


def _done(item: Mail, status: str, **fields: Any) -> None:
    now = int(clock.now())
    actions = [Mail.status.set(status), Mail.due_shard.remove(), Mail.lease_until.remove(),
               Mail.expires_at.set(now + KEEP_SECONDS)]
    if status == "sent":
        actions.append(Mail.sent_at.set(now))
    for name, value in fields.items():
        actions.append(getattr(Mail, name).set(value))
    item.update(actions=actions)


def _deliver(item: Mail) -> str:
    from chalicelib import mailer

    try:
        composed = compose(item)
        if composed is None:
            _done(item, "skipped")
            return "skipped"
        recipients, subject, text, from_name = composed
        mailer.send(recipients, subject, text, from_name)
    except Exception as exc:
        return _failed(item, exc)
    _done(item, "sent", recipients=recipients, subject=subject[:200])
    observability.count("mails_sent")
    log.info("sent %s mail %s to %d recipient(s)", item.kind, item.mail_id, len(recipients))
    return "sent"


def _failed(item: Mail, exc: Exception) -> str:
    attempts = int(item.attempts or 1)
    error = f"{type(exc).__name__}: {exc}"[:500]
    observability.count("mail_errors")
    if attempts >= settings().mail_max_attempts:
        log.error("gave up on %s mail %s after %d attempts: %s", item.kind, item.mail_id, attempts, error)
        observability.count("mails_failed")
        _done(item, "failed", last_error=error)
        return "failed"
    retry_in = min(3600, 30 * 2 ** (attempts - 1))
    log.warning("%s mail %s failed (attempt %d), retrying in %d s: %s", item.kind, item.mail_id, attempts,
                retry_in, error)
    item.update(actions=[Mail.due_at.set(int(clock.now()) + retry_in), Mail.lease_until.remove(),
                         Mail.last_error.set(error)])
    return "retry"


# --- what an email says --------------------------------------------------------------------------

Composed = Tuple[List[str], str, str, Optional[str]]


def compose(item: Mail) -> Optional[Composed]:
    """(recipients, subject, text, sender name), or None when there is nothing to send any more."""
    from chalicelib import site_settings

    try:
        site = Site.get(item.site_id)
        conversation = Conversation.get(item.conversation_id, consistent_read=True)
    except DoesNotExist:
        return None
    try:
        visitor: Optional[Visitor] = Visitor.get(site.site_id, conversation.visitor_id)
    except DoesNotExist:
        visitor = None
    widget = site_settings.stored(site)
    team = widget["widget"]["team_name"] or site.name
    messages = _messages(conversation.conversation_id)
    language = widget["default_language"]
    if language == "auto":
        language = "zh" if any(re.search(_CJK, m.text or "") for m in messages) or re.search(_CJK, site.name) else "en"
    write = _ZH if language == "zh" else _EN
    who = _who(visitor, write)
    if item.kind in ("offline_message", "unanswered"):
        if conversation.status == "closed":
            return None
        opened = int(conversation.opened_at or 0)
        if any(m.sender_role == "agent" and m.created_at >= opened for m in messages):
            return None  # answered meanwhile
        recipients = [a.email for a in Agent.query(site.site_id) if not a.disabled]
        if not recipients:
            return None
        lines = [_line(m, write, who) for m in messages if m.sender_role == "visitor"][-20:]
        key = "offline" if item.kind == "offline_message" else "unanswered"
        subject = write[f"{key}_subject"].format(site=site.name, who=who,
                                                 minutes=settings().mail_unanswered_minutes)
        text = "\n".join([write[f"{key}_intro"].format(who=who, minutes=settings().mail_unanswered_minutes),
                          _contact_lines(visitor, write), "", *lines, "",
                          write["console"].format(url=settings().console_url) if settings().console_url else ""])
        return recipients, subject, text.strip() + "\n", team
    if not conversation.contact_email:
        return None
    if item.kind == "reply":
        if as_dict(conversation.visitor_conns):
            return None  # they are back: the chat shows it
        unread = [m for m in messages if m.sender_role == "agent" and int(m.seq) > int(conversation.visitor_read_seq or 0)]
        if not unread:
            return None
        link = _link_back(site, visitor)
        text = "\n".join([write["reply_intro"].format(team=team), "", *[_line(m, write, who) for m in unread], "",
                          write["reply_link"].format(url=link) if link else write["reply_no_link"]])
        return [conversation.contact_email], write["reply_subject"].format(team=team), text + "\n", team
    if item.kind == "transcript":
        text = "\n".join([write["transcript_intro"].format(team=team), "",
                          *[_line(m, write, who) for m in messages]])
        return [conversation.contact_email], write["transcript_subject"].format(team=team), text + "\n", team
    return None


def _messages(conversation_id: str) -> List[Message]:
    return [m for m in Message.seq_index.query(conversation_id, Message.seq > 0, scan_index_forward=False,
                                               limit=MAX_MESSAGES) if not m.gap and not m.note][::-1]


def _who(visitor: Optional[Visitor], write: Dict[str, str]) -> str:
    if visitor is None:
        return write["visitor"]
    return visitor.name or visitor.email or write["visitor"]


def _contact_lines(visitor: Optional[Visitor], write: Dict[str, str]) -> str:
    if visitor is None:
        return ""
    found = [f"{write[k]}: {getattr(visitor, k)}" for k in ("name", "email", "phone") if getattr(visitor, k)]
    return "\n".join(found)


def _line(message: Message, write: Dict[str, str], who: str) -> str:
    speaker = who if message.sender_role == "visitor" else write["agent"]
    body = message.text or ""
    if message.attachment:
        body = (body + " " if body else "") + f"[{as_dict(message.attachment).get('name', write['file'])}]"
    return f"{speaker}: {body}"


def _link_back(site: Site, visitor: Optional[Visitor]) -> Optional[str]:
    """The page the visitor was on (if it is one of the site's origins), else the site's first origin."""
    from chalicelib import contact

    if visitor is None or not visitor.visitor_id.startswith("v_"):
        return None
    allowed = [o for o in (site.allowed_origins or []) if o != "*"]
    page = (as_dict(visitor.current_page) or {}).get("url") if visitor.current_page else None
    if isinstance(page, str):
        parts = urlsplit(page)
        if f"{parts.scheme}://{parts.netloc}" in allowed or "*" in (site.allowed_origins or []):
            return contact.resume_link(page, site.site_id, visitor.visitor_id)
    if allowed:
        return contact.resume_link(allowed[0] + "/", site.site_id, visitor.visitor_id)
    return None


_EN = {
    "visitor": "A visitor", "agent": "Agent", "file": "file", "name": "Name", "email": "Email", "phone": "Phone",
    "offline_subject": "[{site}] New message from {who}",
    "offline_intro": "{who} left a message while nobody was online:",
    "unanswered_subject": "[{site}] {who} has waited {minutes} minutes",
    "unanswered_intro": "{who} has waited {minutes} minutes without an answer:",
    "console": "Answer in the console: {url}",
    "reply_subject": "{team} replied to you",
    "reply_intro": "{team} replied to your message:",
    "reply_link": "Continue the chat: {url}",
    "reply_no_link": "Reply on our website to continue the chat.",
    "transcript_subject": "Your chat with {team}",
    "transcript_intro": "Your chat with {team}, as you asked:",
}
_ZH = {
    "visitor": "访客", "agent": "客服", "file": "文件", "name": "称呼", "email": "邮箱", "phone": "电话",
    "offline_subject": "[{site}] {who} 给您留言",
    "offline_intro": "{who} 在无人在线时留言：",
    "unanswered_subject": "[{site}] {who} 已等待 {minutes} 分钟",
    "unanswered_intro": "{who} 已等待 {minutes} 分钟，仍未得到回复：",
    "console": "前往客服工作台回复：{url}",
    "reply_subject": "{team} 回复了您",
    "reply_intro": "{team} 回复了您的留言：",
    "reply_link": "继续对话：{url}",
    "reply_no_link": "请回到我们的网站继续对话。",
    "transcript_subject": "您与 {team} 的对话记录",
    "transcript_intro": "按您的要求，这是您与 {team} 的对话记录：",
}
