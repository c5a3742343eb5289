"""A visitor's send limit (``KEFU_RATE_LIMIT`` messages per ``KEFU_RATE_WINDOW`` s), riding on the
seq update a send makes anyway (chalicelib/messages.py): a count per fixed window on the
conversation item, so it holds across all the visitor's sockets, REST and function instances, and
costs no write of its own.

The count lives in one of RATE_SLOTS attributes (the window's number modulo RATE_SLOTS) and every
counted send removes the others. So the slot is absent, or holds this window's count, or (the
visitor's previous send was a whole number of slot cycles ago) a stale one. One conditional update
with if_not_exists thus starts or continues a window, where one counter needed a guess between two
writes, and a wrong guess a refused write (0.44 per message at 100/s in bench/local_load.py,
function instances sharing busy conversations).
"""
from __future__ import annotations

from collections import OrderedDict
from typing import Any, List, Optional, Tuple

from chalicelib import clock
from chalicelib.config import settings
from chalicelib.errors import KefuError, rate_limited
from chalicelib.models import Conversation
from chalicelib.tokens import Identity

RATE_SLOTS = 6
_SLOTS = [getattr(Conversation, f"send_count_{i}") for i in range(RATE_SLOTS)]

# The rate window each conversation was last seen in by this function: a slot left over from
# exactly RATE_SLOTS windows (or a multiple) ago is then reset at once rather than after a refusal.
_last_window: "OrderedDict[str, int]" = OrderedDict()


def _window() -> int:
    return int(clock.now() // settings().rate_window)


def attempts(identity: Identity, conversation_id: str) -> List[Tuple[List[Any], Any]]:
    """What to add to the seq update, (actions, condition) pairs to try in turn: count the send in
    this window, or start the window's slot again."""
    if identity.is_agent:
        return [([], Conversation.conversation_id.exists())]
    window = _window()
    slot = _SLOTS[window % RATE_SLOTS]
    others = [other.remove() for other in _SLOTS if other is not slot] + [Conversation.send_count.remove()]
    earlier_window = Conversation.send_window.does_not_exist() | (Conversation.send_window < window)
    # (an absent slot in this very window: a count the former single counter kept, started again)
    not_later = Conversation.send_window.does_not_exist() | (Conversation.send_window <= window)
    counted = ([slot.set((slot | 0) + 1), Conversation.send_window.set(window)] + others,
               (slot.does_not_exist() & not_later)
               | ((Conversation.send_window == window) & (slot < settings().rate_limit)))
    # the slot still holds a count from RATE_SLOTS windows ago: start it again
    restarted = ([slot.set(1), Conversation.send_window.set(window)] + others, earlier_window)
    if conversation_id in _last_window:
        _last_window.move_to_end(conversation_id)
    while len(_last_window) > 10_000:
        _last_window.popitem(last=False)
    seen_in = _last_window.get(conversation_id)
    if seen_in is not None and seen_in < window and (window - seen_in) % RATE_SLOTS == 0:
        return [restarted, counted]
    return [counted, restarted]


def seen(conversation: Conversation) -> None:
    """Note the window of a conversation the seq update returned (ALL_NEW)."""
    if conversation.send_window is not None:
        _last_window[conversation.conversation_id] = int(conversation.send_window)


def sends_this_window(conversation: Conversation) -> int:
    window = _window()
    if conversation.send_window != window:
        return 0
    return int(getattr(conversation, f"send_count_{window % RATE_SLOTS}") or 0)


def exceeded(conversation: Conversation) -> Optional[KefuError]:
    """The 429 for a seq update the limit refused (read back), or None if it was not the limit."""
    cfg = settings()
    if sends_this_window(conversation) >= cfg.rate_limit:
        return rate_limited("rate_limited", f"at most {cfg.rate_limit} messages per {cfg.rate_window} s")
    return None
