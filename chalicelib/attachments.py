"""Attachments: granting an upload, accepting an uploaded object into a message, signed downloads.

Imported only on the upload and attachment paths, so oss2 and the STS SDK stay out of the
chat functions' cold start.
"""
from __future__ import annotations

from typing import Any, Dict

from chalicelib import conversations, uploads
from chalicelib.errors import bad_request, forbidden, too_large
from chalicelib.models import Site
from chalicelib.sites import upload_policy
from chalicelib.tokens import Identity

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
    return uploads.create_upload_grant(
        site_id=identity.site_id,
        conversation_id=conversation.conversation_id,
        file_name=body["file_name"],
        content_type=body["content_type"],
        size=size,
        max_bytes=limits["max_bytes"],
        allowed_types=limits["allowed_types"],
    )


def accept(identity: Identity, conversation_id: str, attachment: Dict[str, Any]) -> Dict[str, Any]:
    """Check an attachment named in a `send`: a key we issued for this conversation, uploaded, in limits."""
    key = attachment.get("key")
    if not isinstance(key, str) or not uploads.key_belongs_to(key, identity.site_id, conversation_id):
        raise forbidden("attachment_not_granted", "that key was not issued for this conversation")
    name, content_type = attachment.get("name"), attachment.get("content_type")
    if not isinstance(name, str) or not name or len(name) > 255:
        raise bad_request("invalid_attachment_name", "attachment.name must be a string")
    if not isinstance(content_type, str) or len(content_type) > 255:
        raise bad_request("invalid_attachment_type", "attachment.content_type must be a string")
    size = uploads.object_size(key)
    if size is None:
        raise bad_request("attachment_not_uploaded", "no object has been uploaded under that key")
    if size > upload_policy(Site.get(identity.site_id))["max_bytes"]:
        raise too_large("attachment_too_large", "the uploaded object is over the size limit")
    return {"key": key, "name": name, "size": size, "content_type": content_type}


def with_download_url(attachment: Dict[str, Any]) -> Dict[str, Any]:
    """The attachment as recipients see it: with a short-lived signed GET URL, never a public one."""
    signed = uploads.signed_download_url(attachment["key"])
    return {**attachment, "url": signed["url"], "url_expires_at": signed["expires_at"]}


def download_url(identity: Identity, conversation_id: Any, key: Any) -> Dict[str, Any]:
    """A fresh signed URL for an attachment of a conversation the caller can see."""
    conversation = conversations.load(identity, conversation_id)
    if not isinstance(key, str) or not uploads.key_belongs_to(key, identity.site_id, conversation.conversation_id):
        raise forbidden("attachment_not_granted", "that key is not in this conversation")
    return uploads.signed_download_url(key)

