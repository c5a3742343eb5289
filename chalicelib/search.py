"""Search: an inverted index in DynamoDB, kept by the messages table's stream (docs/search.md).

Indexing (``index_records``) runs in its own function, fed by DynamoDB Streams, so the chat path's
calls and units do not change. A document is one message (its text and attachment name) or a
conversation's visitor (name, attributes, verified user id). Every term of a document is one
``SearchEntry`` item, keyed by site and term, sorted newest first (chalicelib/search_terms.py
says what a term is).

Querying (``search``) intersects the posting lists of the query's terms: all of them must be in
one document. A zigzag over the lists, newest first: seek every list to the newest ref at or below
a bound; when all agree it is a hit, else the bound drops to the lowest head. Lists are read in
pages, and a request stops after ``MAX_READS`` queries, handing back a cursor to go on from.
"""
from __future__ import annotations

from typing import Any, Dict, Iterable, List, Optional, Tuple

from chalicelib import paging
from chalicelib.config import settings
from chalicelib.errors import bad_request, forbidden
from chalicelib.models import Conversation, Message, SearchEntry, Visitor, as_dict
from chalicelib.search_terms import MAX_TERMS, query_terms, terms
from chalicelib.tokens import Identity

MAX_QUERY_CHARS = 200
MAX_QUERY_TERMS = 8        # more words than this narrow nothing a person would notice
SEARCH_LIMIT = 20
MAX_SEARCH_LIMIT = 50
POSTINGS_PAGE = 50         # refs per Query of one term's list
MAX_READS = 24             # Queries of posting lists per search request
SNIPPET_BEFORE = 30
SNIPPET_CHARS = 120
PROFILE = "profile"


# --- refs and keys ----------------------------------------------------------------------------

def term_key(site_id: str, term: str) -> str:
    return f"{site_id}#{term}"


def message_ref(created_at: int, conversation_id: str, seq: int) -> str:
    return f"{int(created_at):013d}#{conversation_id}#{int(seq):08d}"


def visitor_ref(created_at: int, conversation_id: str) -> str:
    return f"{int(created_at):013d}#{conversation_id}#v"


def parse_ref(ref: str) -> Tuple[int, str, Optional[int]]:
    """(created_at, conversation_id, seq or None for the visitor's fields)."""
    created_at, conversation_id, tail = ref.split("#")
    return int(created_at), conversation_id, None if tail == "v" else int(tail)


def _profile_key(site_id: str, conversation_id: str) -> str:
    return f"{site_id}#~{conversation_id}"  # "~" is never part of a term


def _expires_at(created_at_ms: int) -> Optional[int]:
    days = settings().search_retention_days
    return int(created_at_ms // 1000) + days * 86400 if days > 0 else None


# --- indexing (the stream handler) ----------------------------------------------------------

def _indexable(record: Dict[str, Any]) -> Optional[Message]:
    """The message a stream record shows with its seq set (a pending message, a gap tombstone or a
    removal is nothing to index)."""
    if record.get("eventName") not in ("INSERT", "MODIFY"):
        return None
    image = (record.get("dynamodb") or {}).get("NewImage")
    if not image or "seq" not in image or "gap" in image:
        return None
    return Message.from_raw_data(image)


def message_terms(message: Message) -> List[str]:
    name = as_dict(message.attachment).get("name") if message.attachment else None
    return terms(" ".join(t for t in (message.text, name) if isinstance(t, str)))


def visitor_terms(visitor: Optional[Visitor]) -> List[str]:
    """The visitor's name (with single characters: a one-character query finds a surname), the
    values of their attributes (an email among them) and a verified user's id."""
    if visitor is None:
        return []
    found: Dict[str, None] = {}
    texts = [visitor.name or ""]
    for value in as_dict(visitor.attributes).values():
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            texts.append(str(value))
    if visitor.verified:
        texts.append(visitor.visitor_id)
    for text in texts:
        for term in terms(text, unigrams=True):
            found.setdefault(term, None)
    return list(found)[:MAX_TERMS]


def _batch_get(model: Any, keys: List[Any]) -> List[Any]:
    keys = list(dict.fromkeys(keys))
    return list(model.batch_get(keys)) if keys else []


def index_records(records: Iterable[Dict[str, Any]]) -> int:
    """Index a batch of stream records of the messages table (NEW_IMAGE). Idempotent: a retried
    batch writes the same items again. Returns the number of postings written."""
    # a message's later record (within one batch) supersedes its earlier ones
    latest = {(m.conversation_id, m.client_msg_id): m for m in (_indexable(r) for r in records) if m is not None}
    found = list(latest.values())
    if not found:
        return 0
    conversations = {c.conversation_id: c for c in _batch_get(Conversation, [m.conversation_id for m in found])}
    writes: List[SearchEntry] = []
    deletes: List[SearchEntry] = []
    for message in found:
        conversation = conversations.get(message.conversation_id)
        if conversation is None:
            continue
        ref = message_ref(message.created_at, message.conversation_id, int(message.seq))
        expires = _expires_at(message.created_at)
        for term in message_terms(message):
            writes.append(SearchEntry(term_key(conversation.site_id, term), ref,
                                      client_msg_id=message.client_msg_id, expires_at=expires))
    _index_visitors(list(conversations.values()), writes, deletes)
    unique = {(entry.term_key, entry.ref): entry for entry in writes}  # BatchWriteItem refuses repeated keys
    with SearchEntry.batch_write() as batch:
        for entry in unique.values():
            batch.save(entry)
        for entry in deletes:
            batch.delete(entry)
    return len(unique)


def _index_visitors(conversations: List[Conversation], writes: List[SearchEntry],
                    deletes: List[SearchEntry]) -> None:
    """Each conversation's visitor terms, rewritten only when they changed since last indexed."""
    visitors = {(v.site_id, v.visitor_id): v for v in _batch_get(
        Visitor, [(c.site_id, c.visitor_id) for c in conversations])}
    profiles = {p.term_key: p for p in _batch_get(
        SearchEntry, [(_profile_key(c.site_id, c.conversation_id), PROFILE) for c in conversations])}
    for conversation in conversations:
        wanted = visitor_terms(visitors.get((conversation.site_id, conversation.visitor_id)))
        key = _profile_key(conversation.site_id, conversation.conversation_id)
        profile = profiles.get(key)
        had = list(profile.terms or []) if profile is not None else []
        ref = visitor_ref(conversation.created_at, conversation.conversation_id)
        if profile is not None and had == wanted and profile.profile_ref == ref:
            continue
        expires = _expires_at(conversation.created_at)
        old_ref = profile.profile_ref if profile is not None else None
        for term in had:
            if term not in wanted or old_ref != ref:
                deletes.append(SearchEntry(term_key(conversation.site_id, term), old_ref))
        for term in wanted:
            if term not in had or old_ref != ref:
                writes.append(SearchEntry(term_key(conversation.site_id, term), ref, expires_at=expires))
        writes.append(SearchEntry(key, PROFILE, terms=wanted, profile_ref=ref, expires_at=expires))


# --- querying -------------------------------------------------------------------------------

class _Postings:
    """One term's posting list, read newest first in pages, sought downwards only."""

    def __init__(self, key: str, budget: "_Budget") -> None:
        self.key = key
        self.budget = budget
        self.buffer: List[str] = []   # refs fetched and not yet passed, newest first
        self.exhausted = False        # nothing older than the buffer's last ref exists
        self.message_keys: Dict[str, str] = {}  # ref -> the message's client_msg_id

    def seek(self, bound: Optional[str], inclusive: bool) -> Optional[str]:
        """The newest ref at or below ``bound`` (strictly below unless ``inclusive``)."""
        def below(ref: str) -> bool:
            return bound is None or ref < bound or (inclusive and ref == bound)

        while self.buffer and not below(self.buffer[0]):
            self.buffer.pop(0)
        if self.buffer or self.exhausted:
            return self.buffer[0] if self.buffer else None
        self.budget.spend()
        condition = None
        if bound is not None:
            condition = SearchEntry.ref <= bound if inclusive else SearchEntry.ref < bound
        page = list(SearchEntry.query(self.key, condition, scan_index_forward=False, limit=POSTINGS_PAGE))
        self.exhausted = len(page) < POSTINGS_PAGE
        self.buffer = [entry.ref for entry in page]
        self.message_keys.update((entry.ref, entry.client_msg_id) for entry in page if entry.client_msg_id)
        return self.buffer[0] if self.buffer else None


class _Budget:
    def __init__(self, reads: int) -> None:
        self.left = reads

    def spend(self) -> None:
        if self.left <= 0:
            raise _OutOfReads()
        self.left -= 1


class _OutOfReads(Exception):
    pass


class Hits:
    def __init__(self) -> None:
        self.refs: List[str] = []
        self.message_keys: Dict[str, str] = {}  # ref -> client_msg_id, for the messages' snippets
        self.going_on: Optional[Tuple[Optional[str], bool]] = None  # where the next page starts; None: the end
        self.reads = 0


def intersect(site_id: str, words: List[str], bound: Optional[str], inclusive: bool, limit: int,
              reads: int = MAX_READS) -> Hits:
    """Refs in every list of ``words``, newest first, below the bound, and where to go on from.
    Stops at ``limit`` hits or after ``reads`` Queries."""
    budget = _Budget(reads)
    lists = [_Postings(term_key(site_id, word), budget) for word in dict.fromkeys(words)]
    hits = Hits()
    try:
        while len(hits.refs) < limit:
            heads = []
            for postings in lists:
                head = postings.seek(bound, inclusive)
                if head is None:
                    break
                heads.append(head)
            else:
                lowest = min(heads)
                if all(head == lowest for head in heads):
                    hits.refs.append(lowest)
                    bound, inclusive = lowest, False
                else:
                    bound, inclusive = lowest, True
                continue
            break  # a list has nothing more: no more hits
        else:
            hits.going_on = (bound, inclusive)
    except _OutOfReads:
        hits.going_on = (bound, inclusive)
    hits.reads = reads - budget.left
    for postings in lists:
        hits.message_keys.update(postings.message_keys)
    return hits


def _snippet(text: Optional[str], query: str, words: List[str]) -> str:
    text = text or ""
    folded = text.casefold()
    position = -1
    for needle in [query.strip().casefold()] + words:
        position = folded.find(needle) if needle else -1
        if position >= 0:
            break
    start = max(0, position - SNIPPET_BEFORE) if position >= 0 else 0
    piece = text[start:start + SNIPPET_CHARS]
    return ("…" if start > 0 else "") + piece + ("…" if start + SNIPPET_CHARS < len(text) else "")


def _check_query(identity: Identity, query: Any, limit: Any) -> Tuple[List[str], int]:
    if not identity.is_agent:
        raise forbidden("agents_only", "only agents can search")
    if not isinstance(query, str) or not query.strip() or len(query) > MAX_QUERY_CHARS:
        raise bad_request("invalid_query", f"query must be a string of 1 to {MAX_QUERY_CHARS} characters")
    words = query_terms(query)[:MAX_QUERY_TERMS]
    if not words:
        raise bad_request("invalid_query", "the query has no letters, digits or CJK characters to search for")
    if limit is None:
        limit = SEARCH_LIMIT
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_SEARCH_LIMIT:
        raise bad_request("invalid_limit", f"limit must be an integer from 1 to {MAX_SEARCH_LIMIT}")
    return words, limit


def search(identity: Identity, query: Any, cursor: Any = None, limit: Any = None) -> Dict[str, Any]:
    """One page of the agent's site's documents that hold every term of ``query``, newest first:
    the ``search_results`` frame (docs/protocol.md)."""
    from chalicelib import conversations as conversation_views

    words, limit = _check_query(identity, query, limit)
    bound: Optional[str] = None
    inclusive = False
    if cursor is not None:
        bound, inclusive_flag = paging.decode_cursor(cursor, (str, int))
        inclusive = inclusive_flag == 1
    hits = intersect(identity.site_id, words, bound, inclusive, limit)
    parsed = [(ref, *parse_ref(ref)) for ref in hits.refs]
    msg_keys = hits.message_keys
    found_messages = {(m.conversation_id, m.client_msg_id): m for m in _batch_get(
        Message, [(cid, msg_keys[ref]) for ref, _, cid, seq in parsed if seq is not None and msg_keys.get(ref)])}
    found_conversations = [c for c in _batch_get(Conversation, [cid for _, _, cid, _ in parsed])
                           if c.site_id == identity.site_id]
    views = {v["conversation_id"]: v for v in conversation_views.views(found_conversations)}
    results: List[Dict[str, Any]] = []
    for ref, created_at, cid, seq in parsed:
        view = views.get(cid)
        if view is None:
            continue
        result: Dict[str, Any] = {"conversation_id": cid, "seq": seq, "created_at": created_at,
                                  "visitor_id": view["visitor_id"], "visitor_name": view["visitor_name"],
                                  "status": view["status"]}
        if seq is None:
            result["matched"] = "visitor"
            shown = [view["visitor_name"] or ""] + [str(v) for v in view["visitor_attributes"].values()]
            result["snippet"] = _snippet(" · ".join(s for s in shown if s), query, words)
        else:
            message = found_messages.get((cid, msg_keys.get(ref)))
            if message is None:
                continue
            result["matched"] = "message"
            result["sender"] = {"role": message.sender_role, "id": message.sender_id}
            name = as_dict(message.attachment).get("name") if message.attachment else None
            result["snippet"] = _snippet(message.text or name, query, words)
        results.append(result)
    shown, last, left_over = paging.take(results, limit, lambda r: r)
    next_cursor = None
    if left_over and last is not None:
        next_cursor = paging.encode_cursor([message_or_visitor_ref(last), 0])
    elif hits.going_on is not None and hits.going_on[0] is not None:
        next_cursor = paging.encode_cursor([hits.going_on[0], int(hits.going_on[1])])
    listed = {r["conversation_id"] for r in shown}
    return {"type": "search_results", "query": query, "results": shown, "next_cursor": next_cursor,
            "conversations": {cid: v for cid, v in views.items() if cid in listed}}


def message_or_visitor_ref(result: Dict[str, Any]) -> str:
    if result["seq"] is None:
        return visitor_ref(result["created_at"], result["conversation_id"])
    return message_ref(result["created_at"], result["conversation_id"], result["seq"])
