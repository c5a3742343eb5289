"""Labels on conversations: a small set of short tags agents add and remove (``label`` action).

Bounded (at most MAX_LABELS of at most MAX_LABEL_CHARS each) because they live on the conversation
item, which every message rewrites. Adding and removing are set operations (ADD/DELETE), so two
agents labelling at once both count; the size bound is a condition on the write itself.
Labels are for agents: the visitor is never told of them.
"""
from __future__ import annotations

import re
import unicodedata
from typing import Any, Dict, List, Optional

from pynamodb.exceptions import UpdateError
from pynamodb.expressions.condition import size

from chalicelib import conversations
from chalicelib.errors import bad_request, is_condition_failure
from chalicelib.models import Conversation, Site
from chalicelib.tokens import Identity

MAX_LABELS = 10
MAX_LABEL_CHARS = 30


def normalise(raw: Any) -> str:
    """A label as stored: trimmed, inner whitespace collapsed, lower case; 1-30 printable characters."""
    if not isinstance(raw, str):
        raise bad_request("invalid_label", "a label is a string")
    label = re.sub(r"\s+", " ", unicodedata.normalize("NFKC", raw)).strip().lower()
    if not 1 <= len(label) <= MAX_LABEL_CHARS or any(unicodedata.category(ch).startswith("C") for ch in label):
        raise bad_request("invalid_label", f"a label is 1-{MAX_LABEL_CHARS} printable characters")
    return label


def _labels(raw: Any, name: str) -> List[str]:
    if raw is None:
        return []
    if not isinstance(raw, list) or len(raw) > MAX_LABELS:
        raise bad_request("invalid_label", f"{name} is a list of at most {MAX_LABELS} labels")
    return sorted({normalise(item) for item in raw})


def label(identity: Identity, conversation_id: Any, add: Any, remove: Any,
          sender_connection: Optional[str] = None) -> Dict[str, Any]:
    """Add and/or remove labels; the site's agents get a ``labeled`` conversation event."""
    to_add, to_remove = _labels(add, "add"), _labels(remove, "remove")
    if not to_add and not to_remove:
        raise bad_request("invalid_label", "give labels to add or remove")
    conversation = conversations._agent_load(identity, conversation_id)
    new = [x for x in to_add if x not in (conversation.labels or set())]
    if new:
        # whatever others added meanwhile, the result holds at most MAX_LABELS
        room = Conversation.labels.does_not_exist() | (size(Conversation.labels) <= MAX_LABELS - len(new))
        try:
            conversation.update(actions=[Conversation.labels.add(set(new))], condition=room)
        except UpdateError as exc:
            if not is_condition_failure(exc):
                raise
            raise bad_request("too_many_labels", f"a conversation has at most {MAX_LABELS} labels")
    gone = set(to_remove) & set(conversation.labels or ())
    if gone:
        conversation.update(actions=[Conversation.labels.delete(gone)])
    site = Site.get(identity.site_id)
    return conversations._announce(site, conversation, "labeled", exclude=sender_connection)
