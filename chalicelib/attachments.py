"""Attachments: granting an upload, accepting an uploaded object into a message, signed downloads.

Imported only on the REST function's upload and attachment paths: oss2 and the STS SDK ship in
its layer alone (infra/package.py), out of the chat functions' package and cold start. A `send`
with an attachment therefore goes over REST (POST /v1/conversations/{id}/messages); messages
carry the attachment's key, and clients ask `download_url` for a signed URL.

- A grant is refused while the conversation is closed, and counts against the upload quotas
  (files and bytes per visitor per hour, per site per day) in the limits table: conditional ADDs,
  on this path only.
- Accepting an attachment believes nothing the client declares but the key: size, type and name
  come from the stored object (a HEAD) and must fit the site's policy; the object then moves from
  the pending prefix (where a lifecycle rule deletes uploads never attached) to its final key.
"""
from __future__ import annotations

import logging
from typing import Any, Dict, List, Tuple

from pynamodb.exceptions import UpdateError

from chalicelib import clock, conversations, uploads
from chalicelib.config import settings
from chalicelib.errors import (bad_request, conflict, forbidden, is_condition_failure, not_found, rate_limited,
                               too_large)
from chalicelib.models import Conversation, Limit, Site, Visitor
from chalicelib.sites import upload_policy
from chalicelib.tokens import Identity

log = logging.getLogger(__name__)

HOUR, DAY = 3600, 86400


def grant(identity: Identity, body: Dict[str, Any]) -> Dict[str, Any]:
    """POST /v1/uploads: everything the browser needs to upload one file straight to OSS."""
    conversation = conversations.load(identity, body.get("conversation_id"))
    if conversation.status == "closed":
        raise forbidden("conversation_closed", "the conversation is closed")
    size = body.get("size")
    if isinstance(size, bool) or not isinstance(size, int):
        raise bad_request("invalid_size", "size must be an integer number of bytes")
    for name in ("file_name", "content_type"):
        if not isinstance(body.get(name), str):
            raise bad_request(f"invalid_{name}", f"{name} must be a string")
    limits = upload_policy(Site.get(identity.site_id))
    # Everything that can refuse the request is checked before the quota counts it.
    uploads.validate(identity.site_id, conversation.conversation_id, body["file_name"], body["content_type"],
                     size, limits["max_bytes"], limits["allowed_types"])
    uploads.check_configured()
    charge_quota(identity, size)
    return uploads.create_upload_grant(
        site_id=identity.site_id,
        conversation_id=conversation.conversation_id,
        file_name=body["file_name"],
        content_type=body["content_type"],
        size=size,
        max_bytes=limits["max_bytes"],
        allowed_types=limits["allowed_types"],
    )


def _quota_counters(identity: Identity, size: int) -> List[Tuple[str, int, int, int, str]]:
    """(counter key, amount, limit, window end, what) for each quota a grant of ``size`` counts in."""
    cfg = settings()
    now = clock.now()
    hour, day = int(now // HOUR), int(now // DAY)
    who = f"{identity.site_id}:{identity.role}:{identity.subject}"
    hour_end, day_end = (hour + 1) * HOUR, (day + 1) * DAY
    return [
        (f"upload-files:{who}#h{hour}", 1, cfg.upload_files_per_hour, hour_end, "files per hour"),
        (f"upload-bytes:{who}#h{hour}", size, cfg.upload_bytes_per_hour, hour_end, "bytes per hour"),
        (f"upload-files:{identity.site_id}#d{day}", 1, cfg.site_upload_files_per_day, day_end,
         "files per day for this site"),
        (f"upload-bytes:{identity.site_id}#d{day}", size, cfg.site_upload_bytes_per_day, day_end,
         "bytes per day for this site"),
    ]


def _over_quota(limit: int, what: str, window_end: int) -> Exception:
    retry_after = max(1, int(window_end - clock.now()) + 1)
    error = rate_limited("rate_limited", f"upload quota reached: at most {limit} {what}; "
                                         f"try again in {retry_after} s")
    error.retry_after = retry_after
    return error


def charge_quota(identity: Identity, size: int) -> None:
    """Count one grant of ``size`` bytes against every upload quota, all or none; 429
    ``rate_limited`` if any quota would be exceeded.

    One conditional ADD per counter item (each gone by TTL an hour after its window), the
    visitor's first: single-item updates are serialised by DynamoDB, so concurrent grants never
    fail on each other as transactions would. A refusal takes back what this grant added before
    it; a function dying in between leaves a count too high, never too low."""
    counters = _quota_counters(identity, size)
    for _, amount, limit, window_end, what in counters:
        if amount > limit:
            raise _over_quota(limit, what, window_end)
    added: List[Tuple[str, int]] = []
    for key, amount, limit, window_end, what in counters:
        try:
            Limit(key).update(actions=[Limit.count.add(amount), Limit.expires_at.set(window_end + HOUR)],
                              condition=Limit.count.does_not_exist() | (Limit.count <= limit - amount))
        except UpdateError as exc:
            _take_back(added)
            if is_condition_failure(exc):
                raise _over_quota(limit, what, window_end)
            raise
        added.append((key, amount))


def _take_back(added: List[Tuple[str, int]]) -> None:
    for key, amount in added:
        try:
            Limit(key).update(actions=[Limit.count.add(-amount)])
        except UpdateError:  # the count stays too high until its window ends: the safe side
            log.warning("could not take back %s from the upload quota counter %s", amount, key, exc_info=True)


def _check_declared(attachment: Dict[str, Any]) -> None:
    """What the client declares besides the key is ignored, but must still be of the right kind."""
    name, content_type = attachment.get("name"), attachment.get("content_type")
    if name is not None and (not isinstance(name, str) or len(name) > 255):
        raise bad_request("invalid_attachment_name", "attachment.name must be a string")
    if content_type is not None and (not isinstance(content_type, str) or len(content_type) > 255):
        raise bad_request("invalid_attachment_type", "attachment.content_type must be a string")


def _check_still_attachable(identity: Identity, conversation: Conversation) -> None:
    """An upload is attached only to a conversation its message will land in: an open one, or a
    visitor's closed one that this send reopens (still the visitor's current conversation).
    Otherwise (an agent, or a visitor who has since moved to another conversation) 409
    ``conversation_closed``: a grant issued before the close buys nothing after it."""
    if conversation.status != "closed":
        return
    if identity.is_agent:
        raise conflict("conversation_closed", "the conversation is closed")
    visitor = Visitor.find(identity.site_id, identity.subject)
    current = visitor.conversation_id if visitor else None
    if current and current != conversation.conversation_id:
        raise conflict("conversation_closed", "the conversation is closed; upload the file again in the current one")


def accept(identity: Identity, conversation_id: str, attachment: Dict[str, Any]) -> Dict[str, Any]:
    """Check an attachment named in a `send` and make it permanent; returns what the message stores.

    Only the key is taken from the client: a key granted for this conversation (pending) or
    already attached to it (a retried send). Size, type and name are the stored object's, checked
    against the site's upload policy; the object moves to its final key.
    """
    key = attachment.get("key")
    final = uploads.final_key(key, identity.site_id, conversation_id)
    if final is None:
        raise forbidden("attachment_not_granted", "that key was not issued for this conversation")
    _check_declared(attachment)
    _check_still_attachable(identity, conversations.load(identity, conversation_id))
    policy = upload_policy(Site.get(identity.site_id))
    pending = uploads.pending_key(final, identity.site_id, conversation_id)
    stored = uploads.head_object(pending)
    if stored is not None:
        content_type = _within_policy(stored, policy)  # refused: nothing moves, the upload expires
        if not uploads.promote(pending, final):
            stored = None  # a concurrent send attached it first: describe the one attached
    if stored is None:
        stored = uploads.head_object(final)  # attached already: a retry, or the same file again
        if stored is None:
            raise bad_request("attachment_not_uploaded", "no object has been uploaded under that key")
        content_type = _within_policy(stored, policy)
    return {"key": final, "name": uploads.display_name(stored.name, content_type), "size": stored.size,
            "content_type": content_type}


def _within_policy(stored: "uploads.StoredObject", policy: Dict[str, Any]) -> str:
    """The stored object's type if its size and type fit the site's upload policy (as it is now)."""
    if stored.size > policy["max_bytes"]:
        raise too_large("attachment_too_large", "the uploaded object is over the size limit")
    return uploads.check_content_type(stored.content_type, policy["allowed_types"],
                                      code="attachment_type_not_allowed")


def download_url(identity: Identity, conversation_id: Any, key: Any) -> Dict[str, Any]:
    """A fresh signed URL for an attachment of a conversation the caller can see (its grant's
    pending key names it too). Type and name come from the object itself (a HEAD)."""
    conversation = conversations.load(identity, conversation_id)
    final = uploads.final_key(key, identity.site_id, conversation.conversation_id)
    if final is None:
        raise forbidden("attachment_not_granted", "that key is not in this conversation")
    stored = uploads.head_object(final)
    if stored is None:
        raise not_found("attachment_not_found", "no file is attached under that key")
    return uploads.signed_download_url(final, stored.name, stored.content_type)
