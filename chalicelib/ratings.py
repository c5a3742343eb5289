"""The visitor's satisfaction rating: 1-5 and an optional comment, once per conversation, after it
closed (``rate`` action). Stored on the conversation (shown to agents), counted in the reports, and
the site's agents get a ``rated`` conversation event. The comment is short: the item is rewritten
by every message should the conversation reopen.
"""
from __future__ import annotations

from typing import Any, Dict, Optional

from pynamodb.exceptions import UpdateError

from chalicelib import clock, conversations, reports
from chalicelib.errors import bad_request, conflict, forbidden, is_condition_failure
from chalicelib.models import Conversation, Site
from chalicelib.tokens import Identity

MAX_COMMENT = 200


def rate(identity: Identity, conversation_id: Any, score: Any, comment: Any = None,
         sender_connection: Optional[str] = None) -> Dict[str, Any]:
    if identity.is_agent:
        raise forbidden("visitors_only", "only the visitor rates a conversation")
    conversations.check_access(identity, conversation_id)
    if isinstance(score, bool) or not isinstance(score, int) or not 1 <= score <= 5:
        raise bad_request("invalid_rating", "rating must be an integer from 1 to 5")
    if comment is not None:
        if not isinstance(comment, str):
            raise bad_request("invalid_comment", "comment must be a string")
        if len(comment) > MAX_COMMENT:
            raise bad_request("comment_too_long", f"a comment is at most {MAX_COMMENT} characters")
        comment = comment.strip() or None
    now = int(clock.now() * 1000)
    conversation = Conversation(conversation_id)
    actions = [Conversation.rating.set(score), Conversation.rated_at.set(now)]
    if comment:
        actions.append(Conversation.rating_comment.set(comment))
    try:
        conversation.update(actions=actions, condition=(
            Conversation.conversation_id.exists() & (Conversation.site_id == identity.site_id)
            & (Conversation.visitor_id == identity.subject) & (Conversation.status == "closed")
            & Conversation.rating.does_not_exist()))
    except UpdateError as exc:
        if not is_condition_failure(exc):
            raise
        current = conversations.load(identity, conversation_id)
        if current.visitor_id != identity.subject:
            raise forbidden("not_in_conversation", "you are not in that conversation")
        if current.rating is not None:
            raise conflict("already_rated", "this conversation was rated already")
        raise conflict("conversation_not_closed", "a conversation is rated once it is closed")
    reports.record(identity.site_id, now, {"rate_n": 1, "rate_sum": score, f"rate_{score}": 1},
                   agent_id=conversation.agent_id)
    shown = conversations._announce(Site.get(identity.site_id), conversation, "rated", exclude=sender_connection)
    return {"type": "conversation", "event": "rated", "conversation": conversations.for_visitor(shown)}
