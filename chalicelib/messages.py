"""Sending, syncing and reading messages: one code path for the WebSocket and REST.

Per send (docs/dynamodb.md has the full table):
  read   GetItem site (the agents' connection roster, to deliver to; at most once a second per warm
         function: sites.cached_site)                                [+ GetItem connection on a cold function]
  write1 UpdateItem conversation ADD last_seq 1, if the sender may write there (and, for a visitor,
         under the send limit)                                       -> the next seq, atomically
  write2 PutItem message with its seq, keyed by client_msg_id, if absent
                                                                     -> stored and in the seq index at once

A retry finds its message by key at write2: the seq it took goes back (a conditional ADD -1 while
it is still the last) or, if another message took the next one meanwhile, becomes a gap tombstone;
the answer is the original ack. A writer dying between the two writes leaves an empty seq, which
sync declares a gap once no writer can still be alive (KEFU_SEQ_GAP_SECONDS); the retry stores the
message under a new seq. A refused write1 stores nothing.

A visitor's first message finds their reserved conversation without an item (write1 refused): it
creates it (conversations.create_reserved), then takes the seq as above.
"""
from __future__ import annotations

import re
from typing import Any, Dict, List, Optional, Tuple

from pynamodb.exceptions import PutError, UpdateError

from chalicelib import clock, connections, conversations, ids, jsonio, outbox, paging, reports, send_limit, sites
from chalicelib.config import settings
from chalicelib.errors import KefuError, bad_request, conflict, forbidden, is_condition_failure, too_large
from chalicelib.models import Conversation, Message, Site, as_dict
from chalicelib.tokens import Identity

# Patterns are strings, compiled by re on first use and cached: a cold start that checks none pays nothing.
_CLIENT_MSG_ID = r"^[A-Za-z0-9_.:-]{1,64}$"
# The conversation keeps a preview of its last message; short, so the item stays under 1 KB.
PREVIEW_CHARS = 80


def _check_send_fields(client_msg_id: Any, text: Any, attachment: Any) -> Optional[str]:
    if not isinstance(client_msg_id, str) or not re.match(_CLIENT_MSG_ID, client_msg_id):
        raise bad_request("invalid_client_msg_id", "client_msg_id: 1-64 letters, digits or _.:-")
    if text is not None and not isinstance(text, str):
        raise bad_request("invalid_text", "text must be a string")
    if text is not None and len(text) > settings().max_text:
        raise too_large("text_too_long", f"text is limited to {settings().max_text} characters")
    if attachment is not None and not isinstance(attachment, dict):
        raise bad_request("invalid_attachment", "attachment must be an object")
    stripped = text.strip() if isinstance(text, str) else ""
    if not stripped and attachment is None:
        raise bad_request("empty_message", "a message needs text or an attachment")
    return text if stripped else None


check_send_fields = _check_send_fields  # for actions that send on a caller's behalf (visitors.invite)


def message_view(message: Message) -> Dict[str, Any]:
    view: Dict[str, Any] = {
        "conversation_id": message.conversation_id,
        "seq": int(message.seq) if message.seq is not None else None,
        "id": message.message_id,
        "client_msg_id": message.client_msg_id,
        "sender": {"role": message.sender_role, "id": message.sender_id},
        "text": message.text,
        "created_at": message.created_at,
    }
    if message.attachment:
        view["attachment"] = _attachment_view(as_dict(message.attachment))
    if message.note:
        view["note"] = True
    return view


def is_for_visitor(message: Message) -> bool:
    """Whether the visitor may ever see this message: internal notes are for the site's agents only
    (never pushed, synced or emailed to the visitor)."""
    return not message.note


def _check_note(identity: Identity, note: Any, attachment: Any) -> bool:
    if note is None or note is False:
        return False
    if note is not True:
        raise bad_request("invalid_note", "note must be true or false")
    if not identity.is_agent:
        raise forbidden("agents_only", "only agents write internal notes")
    if attachment is not None:
        raise bad_request("invalid_note", "an internal note is text only")
    return True


def _attachment_view(attachment: Dict[str, Any]) -> Dict[str, Any]:
    """key, name, size, content_type: no URL. Signing one needs oss2, which the chat functions do
    not carry (cold start); clients ask GET /v1/conversations/{id}/attachments/url (REST) for a
    fresh one, as they do when one expires. (The name is cleaned again: messages stored before
    names were cleaned at attach time.)"""
    from chalicelib.uploads import clean_name  # the standard library only

    name = attachment.get("name")
    if isinstance(name, str):
        name = clean_name(name) or "file"
    return {**attachment, "name": name}


def ack_frame(message: Message, duplicate: bool = False) -> Dict[str, Any]:
    frame = {
        "type": "ack",
        "conversation_id": message.conversation_id,
        "client_msg_id": message.client_msg_id,
        "seq": int(message.seq),
        "id": message.message_id,
        "created_at": message.created_at,
    }
    if duplicate:
        frame["duplicate"] = True
    return frame


def send(identity: Identity, payload: Dict[str, Any], sender_connection: Optional[str] = None) -> Dict[str, Any]:
    """Store a message and deliver it. Returns the ack frame (the original one for a retry).

    A visitor's message to a closed conversation is never refused: it reopens the conversation,
    or lands in the visitor's current one; the ack's ``conversation_id`` says where.
    """
    conversation_id = payload.get("conversation_id")
    conversations.check_access(identity, conversation_id)
    client_msg_id = payload.get("client_msg_id")
    text = _check_send_fields(client_msg_id, payload.get("text"), payload.get("attachment"))
    note = _check_note(identity, payload.get("note"), payload.get("attachment"))
    attachment = None
    if payload.get("attachment") is not None:
        from chalicelib import attachments  # oss2: the REST function alone (protocol.py refuses it)

        attachment = attachments.accept(identity, conversation_id, payload["attachment"])
    for _ in range(3):
        result = _store(identity, conversation_id, client_msg_id, text, attachment, sender_connection, note)
        if isinstance(result, dict):
            return result
        conversation_id = result  # it landed elsewhere (or was reopened): store it there
    raise conflict("conversation_changed", "the conversation keeps changing; retry")


def _store(identity: Identity, conversation_id: str, client_msg_id: str, text: Optional[str],
           attachment: Optional[Dict[str, Any]], sender_connection: Optional[str], note: bool = False) -> Any:
    """The ack, or the id of the conversation to try again (a visitor's closed conversation)."""
    message = Message(
        conversation_id,
        client_msg_id,
        message_id=ids.sortable_id("msg"),
        sender_role=identity.role,
        sender_id=identity.subject,
        text=text,
        attachment=attachment,
        note=True if note else None,
        created_at=int(clock.now() * 1000),  # before its seq is taken: sync's gap rule relies on that
    )
    conversation = _next_seq(identity, conversation_id, message)
    if isinstance(conversation, str):
        return conversation
    message.seq = int(conversation.last_seq)
    try:
        message.save(condition=Message.client_msg_id.does_not_exist())
    except PutError as exc:
        if not is_condition_failure(exc):
            raise
        stored, adopted = _already_stored(identity, message, note)
        if not adopted:
            return ack_frame(stored, duplicate=True)
        message = stored  # left without a seq by a writer of the former write order: now stored

    site = sites.cached_site(identity.site_id)
    if conversation.status == "new":
        conversations.open_on_first_message(site, conversation, sender_connection)  # agents first learn of it
    _count_first_response(identity, conversation, message)
    everyone = connections.agent_connections(site) if message.note else _recipients(site, conversation)
    recipients = [c for c in everyone if c != sender_connection]
    connections.push(recipients, {"type": "message", **message_view(message)})
    if identity.is_agent and not message.note:
        outbox.agent_wrote(conversation)  # emailed if the visitor has left an email and left
    if conversation.status == "queued" and not identity.is_agent:
        conversations.assign_if_possible(site, conversation)
    return ack_frame(message)


def _already_stored(identity: Identity, message: Message, note: bool) -> Tuple[Message, bool]:
    """A retry: the message stored under that client_msg_id, and whether it took the seq just
    taken (a message the former write order left without one). Else that seq goes back if no other
    message took one since, or becomes a gap (sync lists it)."""
    stored = Message.get(message.conversation_id, message.client_msg_id, consistent_read=True)
    if (stored.sender_role, stored.sender_id, bool(stored.note)) != (identity.role, identity.subject, note):
        _give_back(message)
        raise conflict("client_msg_id_conflict", "that client_msg_id belongs to another message")
    if stored.seq is None:
        # A send of the former order (message first, then seq) died between its writes: the
        # message takes this seq. A concurrent retry may do so first; then ours is given back.
        try:
            stored.update(actions=[Message.seq.set(message.seq), Message.created_at.set(message.created_at)],
                          condition=Message.seq.does_not_exist())
            return stored, True
        except UpdateError as exc:
            if not is_condition_failure(exc):
                raise
        stored = Message.get(message.conversation_id, message.client_msg_id, consistent_read=True)
    _give_back(message)
    return stored, False


def _give_back(retry: Message) -> None:
    """Undo the seq a retry took for nothing, so no client sees a gap; a gap if another took one since.

    The retry's seq update also set the conversation's preview to its own text, which messages
    since the original may have replaced: the newest one's goes back with the seq. (If the seq
    cannot go back, a message came after the retry and its update set the preview.)
    """
    seq = int(retry.seq)
    actions = [Conversation.last_seq.add(-1)]
    if not retry.note:
        newest = next((m for m in Message.seq_index.query(retry.conversation_id, Message.seq < seq, limit=10,
                                                           scan_index_forward=False, consistent_read=True)
                       if not m.gap and not m.note), None)
        if newest is not None:
            actions.append(Conversation.last_text.set(_preview(newest)))
    try:
        Conversation(retry.conversation_id).update(actions=actions, condition=Conversation.last_seq == seq)
    except UpdateError as exc:
        if not is_condition_failure(exc):
            raise
        write_gap(retry.conversation_id, seq)


def _preview(message: Message) -> str:
    return (message.text or as_dict(message.attachment).get("name") or "")[:PREVIEW_CHARS]


def _count_first_response(identity: Identity, conversation: Conversation, message: Message) -> None:
    """The first agent reply since the conversation (re)opened: the seq update stamped it (below), so
    seeing our own date there costs no read; its report counters are the one extra write."""
    if (identity.is_agent and not message.note and conversation.opened_at is not None
            and conversation.first_response_id == message.message_id):
        reports.record(identity.site_id, message.created_at,
                       {"frt_n": 1, "frt_ms": max(0, message.created_at - int(conversation.opened_at))},
                       agent_id=identity.subject)


def _next_seq(identity: Identity, conversation_id: str, message: Message) -> Any:
    """Take the next seq (ADD on the conversation, with the access check as its condition).

    Returns the updated conversation, or, for a visitor writing to a closed conversation, the id of
    the conversation to store it in instead (reopened, or the visitor's current one). Nothing of a
    refused message is stored: it is written after this.
    """
    conversation = Conversation(conversation_id)
    condition = (
        Conversation.conversation_id.exists()
        & (Conversation.site_id == identity.site_id)
        & (Conversation.status != "closed")
    )
    if not identity.is_agent:
        condition &= Conversation.visitor_id == identity.subject
    actions = [
        Conversation.last_seq.add(1),
        Conversation.updated_at.set(message.created_at),
    ]
    if not message.note:  # the preview is shown to the visitor too
        actions.append(Conversation.last_text.set(_preview(message)))
    if identity.is_agent and not message.note:  # stamped once: the first reply (reports)
        actions.append(Conversation.first_response_at.set(Conversation.first_response_at | message.created_at))
        actions.append(Conversation.first_response_id.set(Conversation.first_response_id | message.message_id))
    for _ in range(3):
        for extra_actions, extra_condition in send_limit.attempts(identity, conversation_id):
            try:
                conversation.update(actions=actions + extra_actions, condition=condition & extra_condition)
            except UpdateError as exc:
                if not is_condition_failure(exc):
                    raise
                continue
            send_limit.seen(conversation)
            return conversation
        refusal = _refusal(identity, conversation_id)
        if refusal is None:
            continue  # it changed between the write and the read (reopened, a new window): again
        if isinstance(refusal, str):
            return refusal
        raise refusal
    raise conflict("conversation_changed", "the conversation keeps changing; retry")


def _refusal(identity: Identity, conversation_id: str) -> Any:
    """Why the seq update was refused, read back: an error, the id of the conversation a visitor's
    message to a closed one goes to, or None when nothing stands in the way any more (the visitor's
    reserved conversation had no item: it has now)."""
    try:
        current = conversations.load(identity, conversation_id)
    except KefuError as refused:
        return refused
    if conversations.is_virtual(current):  # the visitor's first message: their reserved conversation is created
        if conversations.create_reserved(identity.site_id, identity.subject, conversation_id):
            return None
        return conflict("conversation_changed", "the conversation changed; reload it")
    if current.status == "closed":
        if identity.is_agent:
            return conflict("conversation_closed", "the conversation is closed")
        return conversations.landing_for_visitor(identity, current)
    if not identity.is_agent:
        if current.visitor_id != identity.subject:
            return forbidden("not_in_conversation", "you are not in that conversation")
        return send_limit.exceeded(current)
    return None


def write_gap(conversation_id: str, seq: int) -> None:
    """A tombstone for a seq that will never hold a message, so no client waits for it."""
    tombstone = Message(conversation_id, f"~gap.{seq}", message_id=f"gap.{seq}", seq=seq, sender_role="system",
                        sender_id="kefu", gap=True, created_at=int(clock.now() * 1000))
    try:
        tombstone.save(condition=Message.client_msg_id.does_not_exist())
    except PutError as exc:
        if not is_condition_failure(exc):
            raise


def _recipients(site: Site, conversation: Conversation) -> List[str]:
    return list(as_dict(conversation.visitor_conns)) + connections.agent_connections(site)


def sync(identity: Identity, conversation_id: Any, after_seq: Any, limit: Any = None) -> Dict[str, Any]:
    """Messages after ``after_seq`` in seq order, one page that fits a frame (docs/protocol.md).

    Seqs that will never hold a message are listed in ``gaps``; an empty seq whose writer may
    still be alive is skipped over without being listed (its push or a later sync brings it).
    """
    if isinstance(after_seq, bool) or not isinstance(after_seq, int):
        raise bad_request("invalid_after_seq", "after_seq must be an integer")
    page = settings().sync_page
    if limit is not None:
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= page:
            raise bad_request("invalid_limit", f"limit must be an integer from 1 to {page}")
        page = limit
    conversation = conversations.load(identity, conversation_id)
    last_seq = int(conversation.last_seq or 0)
    if not jsonio.is_seq(after_seq) or after_seq > last_seq:
        raise bad_request("seq_out_of_range", f"after_seq must be between 0 and {last_seq}")
    # The conversation's status and both read marks ride along (its item is read anyway): a client
    # that polls over REST hears no pushes, and one that reconnects may have missed some.
    marks = {"status": conversations.shown_status(conversation),
             "visitor_read_seq": int(conversation.visitor_read_seq or 0),
             "agent_read_seq": int(conversation.agent_read_seq or 0)}
    if conversations.is_virtual(conversation):  # reserved, nobody wrote: nothing to read
        return {"type": "messages", "conversation_id": conversation_id, "messages": [], "gaps": [],
                "has_more": False, "next_after_seq": 0, "last_seq": 0, **marks}
    found = Message.seq_index.query(conversation_id, Message.seq > after_seq, limit=page + 1, consistent_read=True)
    dead_before = (clock.now() - settings().seq_gap_seconds) * 1000
    views: List[Dict[str, Any]] = []
    gaps: List[int] = []
    used = 0
    covered = after_seq  # every seq up to here is in this page (or in flight)
    has_more = False
    examined = 0
    for message in found:
        examined += 1
        seq = int(message.seq)
        if seq > covered + 1 and message.created_at < dead_before:
            gaps.extend(_fill_gaps(conversation_id, covered + 1, seq))
        if message.gap or (not identity.is_agent and not is_for_visitor(message)):
            gaps.append(seq)  # a note is a seq the visitor will never see: listed as a gap for them
        else:
            shown = message_view(message)
            size = paging.encoded_size(shown) + 1
            if len(views) >= page or (views and used + size > paging.PAGE_BYTES):
                has_more = True
                break
            views.append(shown)
            used += size
        covered = seq
    else:
        if examined > page:
            has_more = True
        elif covered < last_seq and conversation.updated_at < dead_before:
            # the newest numbers are empty and their writers are gone
            gaps.extend(_fill_gaps(conversation_id, covered + 1, last_seq + 1))
            covered = last_seq
    return {
        "type": "messages",
        "conversation_id": conversation_id,
        "messages": views,
        "gaps": sorted(set(gaps)),
        "has_more": has_more,
        "next_after_seq": covered,
        "last_seq": last_seq,
        **marks,
    }


MAX_GAPS_FILLED = 100


def _fill_gaps(conversation_id: str, first: int, end: int) -> List[int]:
    filled = list(range(first, min(end, first + MAX_GAPS_FILLED)))
    for seq in filled:
        write_gap(conversation_id, seq)
    return filled


def mark_read(identity: Identity, conversation_id: Any, seq: Any,
              sender_connection: Optional[str] = None) -> Dict[str, Any]:
    """Move the caller's read mark forward to ``seq`` and send the other side a read receipt."""
    conversations.check_access(identity, conversation_id)
    if not jsonio.is_seq(seq):
        raise bad_request("invalid_seq", "seq must be a non-negative integer")
    mark = Conversation.agent_read_seq if identity.is_agent else Conversation.visitor_read_seq
    condition = (
        Conversation.conversation_id.exists()
        & (Conversation.site_id == identity.site_id)
        & (Conversation.last_seq >= seq)
    )
    if not identity.is_agent:
        condition &= Conversation.visitor_id == identity.subject
    conversation = Conversation(conversation_id)
    try:
        conversation.update(actions=[mark.set(seq)], condition=condition & (mark < seq))
    except UpdateError as exc:
        if not is_condition_failure(exc):
            raise
        current = conversations.load(identity, conversation_id)
        if seq > int(current.last_seq or 0):
            raise bad_request("seq_out_of_range", f"seq must be at most {int(current.last_seq or 0)}")
        return {"type": "read", "conversation_id": conversation_id, "seq": seq, "by": _who(identity)}
    frame = {"type": "read", "conversation_id": conversation_id, "seq": seq, "by": _who(identity)}
    _to_other_side(identity, conversation, frame, sender_connection)
    return frame


def typing(identity: Identity, conversation_id: Any, is_typing: Any, sender_connection: Optional[str]) -> None:
    if not isinstance(is_typing, bool):
        raise bad_request("invalid_is_typing", "is_typing must be true or false")
    conversation = conversations.load(identity, conversation_id)
    frame = {"type": "typing", "conversation_id": conversation_id, "is_typing": is_typing, "from": _who(identity)}
    _to_other_side(identity, conversation, frame, sender_connection)


def _who(identity: Identity) -> Dict[str, str]:
    return {"role": identity.role, "id": identity.subject}


def _to_other_side(identity: Identity, conversation: Conversation, frame: Dict[str, Any],
                   sender_connection: Optional[str] = None) -> None:
    if identity.is_agent:
        targets = list(as_dict(conversation.visitor_conns))
        # other agents watching the site see it too
        targets += [c for c in connections.agent_connections(sites.cached_site(identity.site_id)) if c != sender_connection]
    else:
        targets = connections.agent_connections(sites.cached_site(identity.site_id))
    connections.push(targets, frame)
